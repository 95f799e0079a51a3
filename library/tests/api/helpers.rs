//! `spawn_app()` and friends: the real library Application on port 0, with a real counter,
//! a tiny gateway stub for the comments read, and fault stubs (closed port, hanging listener).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use library::settings::Switch;
use library::{Application, Settings};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use service_kit::secrets::AppEnv;

/// Which store the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// redb under a temporary DATA_DIR.
    Embedded,
    /// The run's SecantusDB, with a database of the test's own.
    Mongo,
}

/// Knobs for [`spawn_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The store.
    pub backend: Backend,
    /// `None`: a real counter service of the test's own.
    pub counter_url: Option<String>,
    /// `None`: the gateway stub with [`stub_comments`].
    pub gateway_url: Option<String>,
    /// Load data/demo (embedded) and copy its files.
    pub demo: bool,
    /// Use this DATA_DIR (restart tests) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// A full MONGO_URL (fault tests with their own server).
    pub mongo_url: Option<String>,
    /// Sign-in throttling on (`AUTH_THROTTLE`); off unless a test is about it.
    pub throttle: bool,
    /// `TRUSTED_PROXIES`.
    pub trusted_proxies: String,
    /// `SESSION_MAX_AGE_SECS`.
    pub session_max_age_secs: u64,
}

impl Options {
    /// Defaults for `backend`: real counter, gateway stub, no demo data.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            counter_url: None,
            gateway_url: None,
            demo: false,
            data_dir: None,
            mongo_url: None,
            throttle: false,
            trusted_proxies: String::new(),
            session_max_age_secs: library::settings::DEFAULT_SESSION_MAX_AGE_SECS,
        }
    }
}

/// A running library plus what it talks to.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Cookie-keeping client that does not follow redirects.
    pub client: reqwest::Client,
    /// DATA_DIR of this app.
    pub data_dir: PathBuf,
    /// `MONGO_URL` of this app (with its database), when it runs on MongoDB.
    pub mongo_url: Option<String>,
    /// Keeps the temporary DATA_DIR alive.
    pub _tmp: Option<tempfile::TempDir>,
}

/// The password [`TestApp::signup`] gives `username`.
pub fn password_of(username: &str) -> String {
    format!("pw-{username}-secret")
}

/// The workspace's demo data.
pub fn demo_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/demo"))
}

/// A client without a cookie jar (cookies are sent by hand), not following redirects.
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// The `library.sid=...` pair a response set, if any.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("library.sid="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// A fresh client with its own cookie jar.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// The library on `backend` with a real counter and the gateway stub.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(Options::new(backend)).await
}

/// The library as `options` say.
pub async fn spawn_with(options: Options) -> TestApp {
    service_kit::telemetry::init_for_tests();
    let (tmp, data_dir) = match &options.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().to_path_buf();
            (Some(tmp), dir)
        }
    };
    let counter_url = match options.counter_url {
        Some(url) => url,
        None => spawn_counter().await,
    };
    let gateway_url = match options.gateway_url {
        Some(url) => url,
        None => spawn_gateway_stub(stub_comments()).await,
    };
    let mongo_url = match (options.backend, options.mongo_url) {
        (_, Some(url)) => Some(url),
        (Backend::Mongo, None) => Some(test_harness::mongo_url_with_db(
            &test_harness::mongo(),
            &test_harness::unique_db(),
        )),
        (Backend::Embedded, None) => None,
    };
    let settings = Settings {
        host: "127.0.0.1".into(),
        port: 0,
        mongo_url: mongo_url.clone(),
        counter_url,
        gateway_url,
        gateway_public_url: "ws://127.0.0.1:9/ws".into(),
        data_dir: data_dir.clone(),
        demo_dir: if options.demo {
            demo_dir()
        } else {
            data_dir.join("no-demo")
        },
        workers: 2,
        // Development secrets; the secret rule has tests of its own (secrets.rs).
        app_env: AppEnv::Development,
        auth_throttle: Switch(options.throttle),
        trusted_proxies: options.trusted_proxies.clone(),
        session_max_age_secs: options.session_max_age_secs,
        ..Settings::default()
    };
    let app = Application::build(settings).await.expect("library builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address,
        client: new_client(),
        data_dir,
        mongo_url,
        _tmp: tmp,
    }
}

/// A real counter service (embedded store in a temporary folder); returns its URL.
pub async fn spawn_counter() -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let settings = counter::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        data_dir: tmp.path().to_path_buf(),
        workers: 1,
        ..counter::Settings::default()
    };
    let app = counter::Application::build(settings)
        .await
        .expect("counter builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(async move {
        let _keep = tmp;
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    url
}

/// The comments the gateway stub serves, per room.
pub type StubComments = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// Two comments in `index` (one with markup) and one in book `1`.
pub fn stub_comments() -> StubComments {
    let comment = |id: &str, seq: u64, room: &str, author: &str, text: &str| {
        json!({
            "id": id, "seq": seq, "room": room,
            "author": {"id": author, "name": format!("{author} Name")},
            "text": text, "createdAt": "2024-02-01T12:00:00.000Z"
        })
    };
    let mut rooms = HashMap::new();
    rooms.insert(
        "index".to_owned(),
        vec![
            comment("c1", 1, "index", "JD", "Hello everyone"),
            comment("c2", 2, "index", "mallory", "<script>alert('x')</script>"),
        ],
    );
    rooms.insert(
        "1".to_owned(),
        vec![comment("c3", 1, "1", "JD", "Book one comment")],
    );
    Arc::new(Mutex::new(rooms))
}

/// A stand-in for the gateway's `GET /rooms/{room}/comments` and `GET /rooms/{room}/presence`
/// (always 3 readers: John Doe, Administrator and a guest); returns its URL.
pub async fn spawn_gateway_stub(comments: StubComments) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let data = web::Data::new(comments);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/rooms/{room}/comments",
                web::get().to(
                    |room: web::Path<String>, data: web::Data<StubComments>| async move {
                        let comments = data
                            .lock()
                            .map(|rooms| rooms.get(room.as_str()).cloned().unwrap_or_default())
                            .unwrap_or_default();
                        HttpResponse::Ok().json(json!({"comments": comments, "more": false}))
                    },
                ),
            )
            .route(
                "/rooms/{room}/presence",
                web::get().to(|| async {
                    HttpResponse::Ok().json(json!({
                        "readers": 3,
                        "users": [{"id": "JD", "name": "John Doe"}, {"id": "Admin", "name": "Administrator"}]
                    }))
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// A URL where nothing listens.
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}", test_harness::free_port())
}

/// A URL whose listener accepts connections and never answers.
pub fn hanging_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

impl TestApp {
    /// `address + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// GET with this app's client.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET, answering the status and the body text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// POST JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// Signs up `username` (password [`password_of`]) through the API; asserts 201.
    pub async fn signup(&self, username: &str) {
        let response = self
            .post_json(
                "/api/v1/user/signup",
                &json!({"username": username, "fullname": format!("{username} Full"),
                        "email": format!("{username}@example.com"), "password": password_of(username)}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 201, "signup {username}");
    }

    /// Signs in through the API; asserts 201.
    pub async fn login(&self, username: &str) {
        let response = self
            .post_json(
                "/api/v1/user/login",
                &json!({"username": username, "password": password_of(username)}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 201, "login {username}");
    }

    /// Signs in `username` through the API and answers the session cookie (`library.sid=...`),
    /// for requests that send it by hand.
    pub async fn login_cookie(&self, username: &str, password: &str) -> String {
        let response = bare_client()
            .post(self.url("/api/v1/user/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 201, "login {username}");
        session_cookie(&response).expect("session cookie")
    }

    /// The app's MongoDB database (Mongo backend only).
    pub async fn mongo_db(&self) -> mongodb::Database {
        mongo_db(self.mongo_url.as_deref().expect("a Mongo-backed app")).await
    }

    /// Signs up and in.
    pub async fn signed_in(&self, username: &str) {
        self.signup(username).await;
        self.login(username).await;
    }

    /// Creates a book from JSON; answers the created book.
    pub async fn create_book(&self, title: &str) -> Value {
        let response = self
            .post_json(
                "/api/v1/book",
                &json!({"title": title, "authors": "A. Author", "description": "D", "favorite": 1}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.expect("book JSON")
    }

    /// The CSRF token in the form of the page at `path`.
    pub async fn csrf_from(&self, path: &str) -> String {
        let (status, body) = self.get_text(path).await;
        assert_eq!(status, 200, "{path}");
        extract_csrf(&body).unwrap_or_else(|| panic!("no csrf_token on {path}"))
    }

    /// The uploads folder.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("library").join("uploads")
    }

    /// Names of the stored files: GridFS `uploads.files` ids on MongoDB, else the uploads folder.
    pub async fn stored_files(&self) -> Vec<String> {
        match &self.mongo_url {
            Some(url) => gridfs_names(url).await.0,
            None => match std::fs::read_dir(self.uploads_dir()) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(_) => Vec::new(),
            },
        }
    }
}

/// The database of `url` (its path).
pub async fn mongo_db(url: &str) -> mongodb::Database {
    let client = mongodb::Client::with_uri_str(url)
        .await
        .expect("mongo client");
    client.default_database().expect("database in the URL")
}

/// GridFS file ids in the `uploads` bucket of `url`'s database, and how many chunks it holds.
pub async fn gridfs_names(url: &str) -> (Vec<String>, u64) {
    use futures_util::TryStreamExt;
    let db = mongo_db(url).await;
    let files: Vec<mongodb::bson::Document> = db
        .collection::<mongodb::bson::Document>("uploads.files")
        .find(mongodb::bson::doc! {})
        .await
        .expect("find files")
        .try_collect()
        .await
        .expect("files");
    let chunks = db
        .collection::<mongodb::bson::Document>("uploads.chunks")
        .count_documents(mongodb::bson::doc! {})
        .await
        .expect("count chunks");
    let names = files
        .iter()
        .map(|f| f.get_str("_id").expect("string _id").to_owned())
        .collect();
    (names, chunks)
}

/// The value of the first `name="csrf_token"` hidden input.
pub fn extract_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf_token\" value=\"")?;
    let rest = &html[at + "name=\"csrf_token\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A multipart book form.
pub fn book_form(
    title: &str,
    cover: Option<(&str, Vec<u8>)>,
    file: Option<(&str, Vec<u8>)>,
) -> Form {
    let mut form = Form::new()
        .text("title", title.to_owned())
        .text("authors", "Form Author")
        .text("description", "Form description")
        .text("favorite", "2");
    if let Some((name, bytes)) = cover {
        form = form.part("fileCover", Part::bytes(bytes).file_name(name.to_owned()));
    }
    if let Some((name, bytes)) = file {
        form = form.part("fileBook", Part::bytes(bytes).file_name(name.to_owned()));
    }
    form
}
