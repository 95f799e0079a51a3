"""Static checks of the deployment files (run: python3 -m unittest discover -s tests).

- docker-compose.yml, .env.example, deploy/nginx/nginx.conf, deploy/Dockerfile and every manifest
  under deploy/k8s parse;
- every environment variable that compose or a Kubernetes Deployment gives a service is one the
  service reads (the fields of `pub struct Settings` in <crate>/src/settings.rs, whose names are
  the lowercased environment names), and every variable a container deployment needs is set;
- ports agree: compose PORT / ports / expose, Dockerfile EXPOSE and ENV PORT per target, nginx
  upstream and listen, the URLs services use to reach each other, k8s containerPort, probes,
  Services and the Ingress;
- a small kustomize build (resources, namespace, images, strategic-merge patches, secret
  generators) of the base and the example overlay, every listed file exists, every patch hits a
  resource; the base ships no Secret and the overlay's comes from a git-ignored env file whose
  committed example holds only placeholders the services refuse;
- every built manifest validates against the Kubernetes JSON schemas, offline, with the PyPI
  package kubernetes-validate (bundled schemas, strict mode: unknown fields are errors).

PyYAML and kubernetes-validate come from scripts/test-deps.sh (a venv in
~/.cache/deploy-test-venv); without them the checks skip, unless DEPLOY_TESTS=1 (as
scripts/test.sh sets it), where a missing package is a failure.
"""

import base64
import copy
import os
import re
import unittest
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.sh"
K8S = ROOT / "deploy" / "k8s"
STRICT = os.environ.get("DEPLOY_TESTS") == "1"
KUBERNETES_VERSION = "1.30.0"

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

# The three services: compose service name = k8s Deployment name = Dockerfile target = crate dir.
SERVICES = ("counter", "library", "comments-gateway")
DEFAULT_PORTS = {"counter": 3001, "library": 3002, "comments-gateway": 3003}

# What a container deployment must set: the defaults (embedded stores, in-process fan-out,
# 127.0.0.1 URLs, development secrets) are only right on a laptop.
REQUIRED = {
    "counter": {"PORT", "REDIS_URL"},
    "comments-gateway": {"PORT", "MONGO_URL", "REDIS_URL", "AUTH_TOKEN_SECRET", "ADMIN_TOKEN"},
    "library": {
        "PORT",
        "MONGO_URL",
        "COUNTER_URL",
        "GATEWAY_URL",
        "GATEWAY_PUBLIC_URL",
        "AUTH_SESSION_SECRET",
        "AUTH_TOKEN_SECRET",
    },
}
SECRETS = {"AUTH_SESSION_SECRET", "AUTH_TOKEN_SECRET", "ADMIN_TOKEN"}
# What service_kit::secrets refuses besides short values: every value starting with this.
PLACEHOLDER_PREFIX = "change-me"


def need_yaml(test):
    if yaml is None:
        if STRICT:
            test.fail("PyYAML is not installed (scripts/test-deps.sh installs it)")
        test.skipTest("PyYAML is not installed")


# ---------------------------------------------------------------------------------------------
# Readers shared with test_deploy_stack.py
# ---------------------------------------------------------------------------------------------


def settings_env_names(service):
    """Environment names a service reads: the fields of `pub struct Settings` in settings.rs."""
    text = (ROOT / service / "src" / "settings.rs").read_text(encoding="utf-8")
    match = re.search(r"pub struct Settings\s*\{(.*?)\n\}", text, re.S)
    if not match:
        raise AssertionError(f"{service}/src/settings.rs has no `pub struct Settings`")
    fields = re.findall(r"^\s*pub\s+([a-z_][a-z0-9_]*)\s*:", match.group(1), re.M)
    return {f.upper() for f in fields}


def load_compose():
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def read_env_file(path=ENV_EXAMPLE):
    """KEY=VALUE lines of an env file (comments and blanks skipped, no quoting)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise AssertionError(f"{path.name}: not KEY=VALUE: {line!r}")
        values[key.strip()] = value.strip()
    return values


INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value, env, missing=None):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} against `env` (empty = unset for ':')."""

    def one(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        have = env.get(name)
        if op in (":-", ":?"):
            unset = not have
        else:
            unset = have is None
        if not unset:
            return have
        if op in (":-", "-"):
            return arg
        if missing is not None:
            missing.append(name)
            return ""
        raise AssertionError(f"compose needs {name}: {arg}")

    return INTERPOLATION.sub(one, str(value))


def compose_environment(service, env=None, compose=None):
    """The environment compose gives `service`, interpolated from `env` (default .env.example)."""
    compose = compose or load_compose()
    env = read_env_file() if env is None else env
    raw = compose["services"][service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(v, env) for k, v in raw.items()}


def dockerfile_stages():
    """{stage name: {'from', 'env', 'expose', 'lines'}} of deploy/Dockerfile."""
    stages = {}
    current = None
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            base, name = m.group(1), m.group(2) or f"stage{len(stages)}"
            parent = stages.get(base)
            current = {
                "from": base,
                "env": dict(parent["env"]) if parent else {},
                "expose": list(parent["expose"]) if parent else [],
                "user": parent["user"] if parent else None,
                "healthcheck": parent["healthcheck"] if parent else None,
                "lines": [],
            }
            stages[name] = current
            continue
        if current is None:
            continue
        current["lines"].append(line)
        if word == "ENV":
            for key, value in re.findall(r"([A-Z0-9_]+)=(\S+)", rest):
                current["env"][key] = value
        elif word == "EXPOSE":
            current["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "USER":
            current["user"] = rest.strip()
        elif word == "HEALTHCHECK":
            current["healthcheck"] = rest.strip()
    return stages


def image_environment(service):
    """ENV of the service's final Dockerfile stage (inherited ENV included)."""
    return dict(dockerfile_stages()[service]["env"])


def nginx_conf():
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = re.sub(r"#[^\n]*", "", text)
    upstreams = {}
    for name, body in re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", text, re.S):
        upstreams[name] = re.findall(r"^\s*server\s+([^\s;]+)", body, re.M)
    listens = [int(p) for p in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", text, re.M)]
    passes = re.findall(r"proxy_pass\s+http://([^\s;/]+)", text)
    return {"text": text, "upstreams": upstreams, "listens": listens, "proxy_passes": passes}


def host_port(url, default_port=None):
    u = urlparse(url)
    return u.hostname, u.port or default_port


# ---------------------------------------------------------------------------------------------
# A small kustomize: resources, namespace, images, strategic-merge patches (maps merge, lists
# replace, which is what the overlay's patches rely on).
# ---------------------------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def load_yaml_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def containers_of(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def generated_secret(directory, spec, problems, examples):
    """A secretGenerator's Secret. An `envs` file that is missing (it is git-ignored: the
    operator writes it) is read from its committed `<file>.example` and noted in `examples`."""
    data = {}
    for env in spec.get("envs", []):
        path = directory / env
        if not path.is_file():
            example = directory / f"{env}.example"
            if not example.is_file():
                problems.append(f"{directory}: secretGenerator env file {env} (nor {env}.example) exists")
                continue
            examples.append(example)
            path = example
        data.update(read_env_file(path))
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name = spec["name"]
    if not spec.get("options", {}).get("disableNameSuffixHash"):
        problems.append(f"{directory}: secretGenerator {name} would get a hash suffix the Deployments do not name")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": spec.get("type", "Opaque"),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def secret_values(doc):
    """A Secret's values, decoded."""
    values = dict(doc.get("stringData") or {})
    for k, v in (doc.get("data") or {}).items():
        values[k] = base64.b64decode(v).decode()
    return values


def kustomize_build(directory, problems, examples=None):
    """The resources `kustomize build directory` would print (as far as this subset goes)."""
    examples = [] if examples is None else examples
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        problems.append(f"{directory}: no kustomization.yaml")
        return []
    k = yaml.safe_load(kfile.read_text(encoding="utf-8"))
    out = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        if path.is_dir():
            out += kustomize_build(path, problems, examples)
        elif path.is_file():
            out += load_yaml_docs(path)
        else:
            problems.append(f"{kfile}: resource {res} does not exist")
    for spec in k.get("secretGenerator", []):
        out.append(generated_secret(directory, spec, problems, examples))
    for p in k.get("patches", []) + [{"path": p} for p in k.get("patchesStrategicMerge", [])]:
        path = directory / p["path"]
        if not path.is_file():
            problems.append(f"{kfile}: patch {p['path']} does not exist")
            continue
        for patch in load_yaml_docs(path):
            hits = [
                i
                for i, d in enumerate(out)
                if d.get("kind") == patch.get("kind")
                and d.get("metadata", {}).get("name") == patch.get("metadata", {}).get("name")
            ]
            if len(hits) != 1:
                problems.append(f"{path}: patch matches {len(hits)} resources, not 1")
                continue
            out[hits[0]] = merge(out[hits[0]], patch)
    for item in k.get("labels", []):
        for d in out:
            d.setdefault("metadata", {}).setdefault("labels", {}).update(item.get("pairs", {}))
    if "namespace" in k:
        for d in out:
            if d.get("kind") not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    for image in k.get("images", []):
        used = False
        for d in out:
            for c in containers_of(d):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    used = True
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
        if not used:
            problems.append(f"{kfile}: image {image['name']} is used by no container")
    return out


def k8s_dirs():
    return [K8S / "base"] + sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


class SettingsStructs(unittest.TestCase):
    def test_settings_fields_are_found(self):
        for service in SERVICES:
            names = settings_env_names(service)
            self.assertIn("PORT", names, service)
            self.assertTrue(REQUIRED[service] <= names, (service, REQUIRED[service] - names))


class ComposeFile(unittest.TestCase):
    def setUp(self):
        need_yaml(self)
        self.compose = load_compose()
        self.services = self.compose["services"]
        self.env = read_env_file()

    def test_shape(self):
        s = self.services
        for name in ("storage_redis", "storage_mongo", "gateway-proxy") + SERVICES:
            self.assertIn(name, s)
            self.assertEqual(s[name].get("restart"), "unless-stopped", name)
            self.assertIn("healthcheck", s[name], name)
        self.assertTrue(
            any(v.endswith(":/data") for v in s["storage_redis"]["volumes"]), "redis data volume"
        )
        self.assertRegex(s["storage_mongo"]["image"], r"^mongo:(7|8)(\.|$)")
        self.assertIn(
            "./data/mongo/init-db.js:/docker-entrypoint-initdb.d/init-db.js:ro",
            s["storage_mongo"]["volumes"],
        )
        self.assertTrue((ROOT / "data" / "mongo" / "init-db.js").is_file())
        self.assertGreaterEqual(s["comments-gateway"]["deploy"]["replicas"], 2)
        # The library is stateless (files in MongoDB): no volume, several replicas.
        self.assertNotIn("volumes", s["library"], "the library keeps nothing on a volume")
        self.assertFalse(
            [v for v in self.compose.get("volumes", {}) if "library" in v or "upload" in v],
            "no library volume",
        )
        self.assertGreaterEqual(s["library"]["deploy"]["replicas"], 2)
        self.assertNotIn("ports", s["comments-gateway"], "replicas are reached through the proxy")
        volumes = set(self.compose.get("volumes", {}))
        for svc in s.values():
            for v in svc.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("."):
                    self.assertTrue((ROOT / src).exists(), src)
                else:
                    self.assertIn(src, volumes, f"named volume {src} not declared")

    def test_healthchecks_use_readyz_and_depends_on_waits_for_health(self):
        for name in SERVICES:
            test = self.services[name]["healthcheck"]["test"]
            self.assertEqual(test, ["CMD", "healthcheck", "/readyz"], name)
        for name, svc in self.services.items():
            for dep, how in (svc.get("depends_on") or {}).items():
                self.assertIn(dep, self.services, f"{name} depends on unknown {dep}")
                self.assertEqual(how.get("condition"), "service_healthy", f"{name} -> {dep}")
                self.assertIn("healthcheck", self.services[dep], dep)
        self.assertIn("/readyz", " ".join(self.services["gateway-proxy"]["healthcheck"]["test"]))

    def test_images_are_built_from_the_dockerfile_targets(self):
        stages = dockerfile_stages()
        for name in SERVICES:
            build = self.services[name]["build"]
            self.assertEqual(build["dockerfile"], "deploy/Dockerfile")
            self.assertEqual(build["context"], ".")
            self.assertEqual(build["target"], name)
            self.assertIn(name, stages)

    def test_every_variable_set_is_read_and_every_required_one_is_set(self):
        for name in SERVICES:
            env = compose_environment(name, self.env, self.compose)
            read = settings_env_names(name)
            self.assertEqual(set(env) - read, set(), f"{name}: compose sets variables it never reads")
            self.assertEqual(REQUIRED[name] - set(env), set(), f"{name}: required variables unset")
            for key, value in env.items():
                self.assertTrue(value.strip(), f"{name}: {key} is empty")
            image_env = image_environment(name)
            self.assertEqual(set(image_env) - read, set(), f"{name}: Dockerfile ENV not read")

    def test_secrets_come_from_the_env_file(self):
        text = yaml.safe_dump(self.compose)  # values only, not the comments
        used = {m.group(1) for m in INTERPOLATION.finditer(text)}
        required = {m.group(1) for m in INTERPOLATION.finditer(text) if m.group(2) == ":?"}
        self.assertEqual(SECRETS, required, "secrets must be ${VAR:?...} (compose refuses without)")
        self.assertEqual(set(self.env) - used, set(), ".env.example names variables compose ignores")
        self.assertEqual(used - set(self.env), set(), "compose reads variables .env.example lacks")
        for name in SERVICES:
            raw = self.services[name].get("environment") or {}
            for key in SECRETS & set(raw):
                self.assertRegex(str(raw[key]), r"^\$\{" + key + r":\?", f"{name}: {key} literal")
        # Compose with an empty .env refuses to start: every secret is reported missing.
        missing = []
        for name in SERVICES:
            for v in (self.services[name].get("environment") or {}).values():
                interpolate(v, {}, missing)
        self.assertEqual(set(missing), SECRETS)
        ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
        self.assertIn(".env", ignored, ".env must stay out of the build context")

    def test_ports_agree(self):
        stages = dockerfile_stages()
        env = {n: compose_environment(n, self.env, self.compose) for n in SERVICES}
        for name in SERVICES:
            port = int(env[name]["PORT"])
            self.assertEqual(port, DEFAULT_PORTS[name], name)
            self.assertEqual(stages[name]["expose"], [port], f"{name}: Dockerfile EXPOSE")
            self.assertEqual(int(stages[name]["env"]["PORT"]), port, f"{name}: Dockerfile PORT")
            svc = self.services[name]
            published = [str(p).split(":")[-1] for p in svc.get("ports", [])]
            exposed = [str(p) for p in svc.get("expose", [])]
            self.assertEqual(published + exposed and set(published + exposed), {str(port)}, name)
        self.assertNotIn("ports", self.services["library"], "replicas are reached through the proxy")
        self.assertEqual(self.services["counter"]["ports"], ["3001:3001"])

        # nginx: listens where gateway-proxy publishes (:3003 the gateway, :80 the library),
        # proxies to the services' ports.
        nginx = nginx_conf()
        gw_port = int(env["comments-gateway"]["PORT"])
        lib_port = int(env["library"]["PORT"])
        self.assertEqual(
            nginx["upstreams"],
            {
                "comments_gateway": [f"comments-gateway:{gw_port}"],
                "library": [f"library:{lib_port}"],
            },
        )
        self.assertEqual(set(nginx["proxy_passes"]), {"comments_gateway", "library"})
        proxy_ports = self.services["gateway-proxy"]["ports"]
        self.assertEqual(proxy_ports, ["3003:3003", "80:80"])
        self.assertEqual(
            sorted(nginx["listens"]), sorted(int(p.split(":")[1]) for p in proxy_ports)
        )
        self.assertRegex(nginx["text"], r"client_max_body_size\s+\d+m", "uploads pass the proxy")
        self.assertIn(
            "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro",
            self.services["gateway-proxy"]["volumes"],
        )
        self.assertIn("proxy_set_header Upgrade $http_upgrade", nginx["text"])
        self.assertRegex(nginx["text"], r"proxy_read_timeout\s+3600s")

        # URLs between the services name compose services and their ports.
        lib = env["library"]
        self.assertEqual(host_port(lib["COUNTER_URL"]), ("counter", int(env["counter"]["PORT"])))
        self.assertEqual(host_port(lib["GATEWAY_URL"]), ("gateway-proxy", gw_port))
        self.assertIn(gw_port, nginx["listens"])
        public = urlparse(lib["GATEWAY_PUBLIC_URL"])
        self.assertEqual(public.scheme, "ws")
        self.assertEqual(public.path, "/ws")
        self.assertEqual(str(public.port), proxy_ports[0].split(":")[0], "browser reaches nginx")
        for name in ("counter", "comments-gateway"):
            self.assertEqual(host_port(env[name]["REDIS_URL"]), ("storage_redis", 6379))
        for name in ("library", "comments-gateway"):
            url = urlparse(env[name]["MONGO_URL"])
            self.assertEqual((url.hostname, url.port), ("storage_mongo", 27017))
            self.assertEqual(url.path, "/library")


class Dockerfile(unittest.TestCase):
    def test_multi_stage_slim_non_root_with_healthcheck(self):
        stages = dockerfile_stages()
        text = DOCKERFILE.read_text(encoding="utf-8")
        self.assertIn("cargo chef prepare", text)
        self.assertIn("cargo chef cook", text)
        self.assertRegex(stages["runtime"]["from"], r"^debian:.*-slim$|slim")
        for name in SERVICES:
            stage = stages[name]
            self.assertEqual(stage["from"], "runtime", name)
            self.assertTrue(stage["user"] and not stage["user"].startswith(("root", "0")), name)
            self.assertIn("healthcheck", stage["healthcheck"] or "", name)
            self.assertIn("/readyz", stage["healthcheck"], name)
            self.assertTrue(any(f"/out/{name}" in line for line in stage["lines"]), name)
        self.assertTrue(os.access(HEALTHCHECK, os.X_OK) or "--chmod=0755" in text)

    def test_library_image_carries_static_files_templates_and_demo_data(self):
        stages = dockerfile_stages()
        lib = stages["library"]
        copies = {}
        for line in lib["lines"]:
            if line.upper().startswith("COPY") and "--from" not in line:
                parts = [p for p in line.split()[1:] if not p.startswith("--")]
                copies[parts[0]] = parts[1]
        for src in ("library/static", "library/templates", "data/demo"):
            self.assertIn(src, copies)
            self.assertTrue((ROOT / src).is_dir(), src)
        self.assertEqual(lib["env"]["STATIC_DIR"], copies["library/static"])
        self.assertEqual(lib["env"]["DEMO_DIR"], copies["data/demo"])
        self.assertTrue((ROOT / "data" / "demo" / "books.json").is_file())
        self.assertTrue((ROOT / "data" / "demo" / "files").is_dir())

    def test_dockerignore_keeps_what_the_build_needs(self):
        patterns = [
            p.strip().lstrip("/").replace("**/", "")
            for p in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if p.strip() and not p.startswith("#")
        ]
        self.assertIn("target", patterns)
        needed = ["Cargo.toml", "Cargo.lock", "library/static", "data/demo", "deploy/healthcheck.sh"]
        needed += [f"{c}/src" for c in SERVICES]
        for path in needed:
            self.assertTrue((ROOT / path).exists(), path)
            for pat in patterns:
                self.assertFalse(
                    path == pat or path.startswith(pat + "/"), f"{path} ignored by {pat}"
                )


class Kubernetes(unittest.TestCase):
    def setUp(self):
        need_yaml(self)

    def built(self):
        out = {}
        for d in k8s_dirs():
            problems = []
            docs = kustomize_build(d, problems)
            self.assertEqual(problems, [], d)
            out[d] = docs
        return out

    def test_every_file_parses_and_build_resolves(self):
        files = sorted(K8S.rglob("*.yaml"))
        self.assertGreater(len(files), 5)
        for f in files:
            for doc in load_yaml_docs(f):
                self.assertIn("kind", doc, f)
                self.assertIn("apiVersion", doc, f)
        builds = self.built()
        self.assertIn(K8S / "overlays" / "example", builds)
        for d, docs in builds.items():
            kinds = {(x["kind"], x["metadata"]["name"]) for x in docs}
            for name in SERVICES:
                self.assertIn(("Deployment", name), kinds, d)
                self.assertIn(("Service", name), kinds, d)
            for want in (
                ("HorizontalPodAutoscaler", "comments-gateway"),
                ("PodDisruptionBudget", "comments-gateway"),
                ("HorizontalPodAutoscaler", "library"),
                ("PodDisruptionBudget", "library"),
                ("ConfigMap", "book-library-config"),
            ):
                self.assertIn(want, kinds, d)
            secret = ("Secret", "book-library-secrets")
            if d == K8S / "base":
                self.assertNotIn(secret, kinds, "the base ships no Secret: the overlay makes it")
            else:
                self.assertIn(secret, kinds, f"{d}: the overlay must create the Secret")
            self.assertTrue(any(k == "Ingress" for k, _ in kinds), d)
            names = [(x["kind"], x["metadata"]["name"]) for x in docs]
            self.assertEqual(len(names), len(set(names)), f"{d}: duplicate resources")

    def test_validates_against_kubernetes_schemas(self):
        try:
            import kubernetes_validate
        except ImportError:
            if STRICT:
                self.fail("kubernetes-validate is not installed (scripts/test-deps.sh)")
            self.skipTest("kubernetes-validate is not installed")
        count = 0
        for d, docs in self.built().items():
            for doc in docs:
                with self.subTest(dir=str(d.relative_to(ROOT)), kind=doc["kind"], name=doc["metadata"]["name"]):
                    try:
                        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        self.fail(f"{e.message} at {'.'.join(map(str, e.path))}")
                count += 1
        self.assertGreater(count, 10)

    def test_environment_ports_probes_and_references(self):
        stages = dockerfile_stages()
        for d, docs in self.built().items():
            by = {(x["kind"], x["metadata"]["name"]): x for x in docs}
            config = by[("ConfigMap", "book-library-config")]["data"]
            secret_doc = by.get(("Secret", "book-library-secrets"))
            secret = secret_values(secret_doc) if secret_doc else None
            for name in SERVICES:
                dep = by[("Deployment", name)]
                pod = dep["spec"]["template"]["spec"]
                labels = dep["spec"]["template"]["metadata"]["labels"]
                self.assertTrue(
                    set(dep["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())
                )
                (c,) = pod["containers"]
                env = {e["name"]: e for e in c.get("env", [])}
                read = settings_env_names(name)
                self.assertEqual(set(env) - read, set(), f"{d} {name}: env not read by the service")
                self.assertEqual(REQUIRED[name] - set(env), set(), f"{d} {name}: env missing")
                for e in env.values():
                    ref = e.get("valueFrom", {})
                    if "configMapKeyRef" in ref:
                        self.assertIn(ref["configMapKeyRef"]["key"], config, e["name"])
                    if "secretKeyRef" in ref and secret is not None:
                        self.assertIn(ref["secretKeyRef"]["key"], secret, e["name"])
                for s in SECRETS & set(env):
                    self.assertIn("secretKeyRef", env[s].get("valueFrom", {}), f"{name} {s}")
                port = DEFAULT_PORTS[name]
                self.assertEqual(int(env["PORT"]["value"]), port)
                self.assertEqual([p["containerPort"] for p in c["ports"]], [port])
                self.assertEqual(stages[name]["expose"], [port])
                port_name = c["ports"][0]["name"]
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                for probe in ("readinessProbe", "livenessProbe"):
                    self.assertIn(c[probe]["httpGet"]["port"], (port_name, port))
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                svc = by[("Service", name)]
                self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
                self.assertEqual([p["port"] for p in svc["spec"]["ports"]], [port])
                self.assertIn(svc["spec"]["ports"][0]["targetPort"], (port_name, port))
            gw = by[("Deployment", "comments-gateway")]["spec"]["template"]["spec"]
            self.assertGreaterEqual(gw["terminationGracePeriodSeconds"], 30)
            for name in ("comments-gateway", "library"):
                hpa = by[("HorizontalPodAutoscaler", name)]["spec"]
                self.assertEqual(hpa["scaleTargetRef"]["name"], name)
                self.assertGreaterEqual(hpa["minReplicas"], 2)
                pdb = by[("PodDisruptionBudget", name)]["spec"]
                self.assertEqual(
                    pdb["selector"]["matchLabels"],
                    by[("Deployment", name)]["spec"]["selector"]["matchLabels"],
                )
            # The library is stateless: no volume, no claim, more than one replica.
            lib = by[("Deployment", "library")]["spec"]
            self.assertGreater(lib["replicas"], 1)
            self.assertNotIn("volumes", lib["template"]["spec"])
            self.assertFalse(lib["template"]["spec"]["containers"][0].get("volumeMounts"))
            self.assertNotEqual(lib.get("strategy", {}).get("type"), "Recreate")
            self.assertFalse([k for k, _ in by if k == "PersistentVolumeClaim"], "no volume claims")
            # URLs in the ConfigMap point at the Services.
            self.assertEqual(host_port(config["COUNTER_URL"]), ("counter", 3001))
            self.assertEqual(host_port(config["GATEWAY_URL"]), ("comments-gateway", 3003))
            public = urlparse(config["GATEWAY_PUBLIC_URL"])
            self.assertEqual((public.scheme, public.path), ("wss", "/ws"))
            # Ingress: /ws to the gateway, the rest to the library, WebSocket-friendly timeouts;
            # its host is the one the browser is told to open.
            (ing,) = [x for x in docs if x["kind"] == "Ingress"]
            ann = ing["metadata"].get("annotations", {})
            for key in ("proxy-read-timeout", "proxy-send-timeout"):
                self.assertGreaterEqual(int(ann[f"nginx.ingress.kubernetes.io/{key}"]), 3600)
            routes = {}
            for rule in ing["spec"]["rules"]:
                self.assertEqual(rule["host"], public.hostname, d)
                for p in rule["http"]["paths"]:
                    routes[p["path"]] = p["backend"]["service"]
            self.assertEqual(routes["/ws"]["name"], "comments-gateway")
            self.assertEqual(routes["/"]["name"], "library")
            for backend in routes.values():
                svc = by[("Service", backend["name"])]
                self.assertIn(backend["port"].get("name"), [p["name"] for p in svc["spec"]["ports"]])


class ShippedSecrets(unittest.TestCase):
    """The project ships no usable secret: its examples hold placeholders the services refuse."""

    def test_the_rule_refuses_the_placeholder_prefix(self):
        rule = (ROOT / "service-kit" / "src" / "secrets.rs").read_text(encoding="utf-8")
        self.assertIn(f'starts_with("{PLACEHOLDER_PREFIX}")', rule)

    def test_env_example_secrets_are_placeholders(self):
        values = read_env_file()
        for name in SECRETS:
            self.assertTrue(values[name].lower().startswith(PLACEHOLDER_PREFIX), name)

    def test_k8s_secret_values_come_from_an_ignored_file(self):
        need_yaml(self)
        ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
        for d in k8s_dirs():
            problems, examples = [], []
            docs = kustomize_build(d, problems, examples)
            self.assertEqual(problems, [], d)
            for doc in docs:
                if doc["kind"] != "Secret":
                    continue
                self.assertTrue(examples, f"{d}: a Secret with committed values")
                values = secret_values(doc)
                self.assertEqual(SECRETS - set(values), set(), d)
                for name in SECRETS:
                    self.assertTrue(values[name].lower().startswith(PLACEHOLDER_PREFIX), f"{d} {name}")
            for example in examples:
                real = example.relative_to(ROOT).with_suffix("")
                pattern = "/" + str(real.parent.parent / "*" / real.name)
                self.assertTrue(str(real) in ignored or "/" + str(real) in ignored or pattern in ignored,
                                f"{real} must be git-ignored")


class DocumentedNames(unittest.TestCase):
    """Every variable a service reads (its `Settings` fields) is documented in docs/operations.md."""

    def test_settings_are_documented(self):
        text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
        for service in REQUIRED:
            for name in sorted(settings_env_names(service) | REQUIRED[service]):
                with self.subTest(service=service, variable=name):
                    self.assertIn(f"`{name}`", text, f"{service} reads {name}: document it in docs/operations.md")


if __name__ == "__main__":
    unittest.main()
