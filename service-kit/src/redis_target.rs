//! Which Redis a service talks to: one server (`REDIS_URL`), a Redis Cluster
//! (`REDIS_CLUSTER_NODES`: comma-separated seed nodes, each `host:port` or a `redis://` /
//! `rediss://` URL with credentials), or none (the embedded default). Setting both is a
//! start-up error. Shared by the counter and the gateway so both read the settings alike.

/// The Redis a service was configured with.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server: the `REDIS_URL` as given.
    Single(String),
    /// A Redis Cluster: seed node URLs, each `redis://...` or `rediss://...`.
    Cluster(Vec<String>),
}

/// Why the Redis settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedisTargetError {
    /// `REDIS_URL` and `REDIS_CLUSTER_NODES` are both set.
    #[error(
        "REDIS_URL and REDIS_CLUSTER_NODES are both set: set REDIS_URL for one Redis or REDIS_CLUSTER_NODES for a Redis Cluster, not both"
    )]
    Both,
    /// A seed node is not `host:port` or a redis URL.
    #[error("REDIS_CLUSTER_NODES: {0:?} is not host:port or a redis:// / rediss:// URL")]
    BadNode(String),
}

impl RedisTarget {
    /// Reads `REDIS_URL` and `REDIS_CLUSTER_NODES` (empty or blank values count as unset);
    /// `Ok(None)` when neither is set.
    pub fn from_settings(
        redis_url: Option<&str>,
        cluster_nodes: Option<&str>,
    ) -> Result<Option<Self>, RedisTargetError> {
        let url = redis_url.map(str::trim).filter(|u| !u.is_empty());
        let nodes = cluster_nodes.map(str::trim).filter(|n| !n.is_empty());
        match (url, nodes) {
            (Some(_), Some(_)) => Err(RedisTargetError::Both),
            (Some(url), None) => Ok(Some(RedisTarget::Single(url.to_owned()))),
            (None, Some(nodes)) => parse_nodes(nodes).map(|n| Some(RedisTarget::Cluster(n))),
            (None, None) => Ok(None),
        }
    }

    /// For logs: the addresses without credentials.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Single(url) => format!("redis {}", redact(url)),
            RedisTarget::Cluster(nodes) => format!(
                "redis cluster (seeds {})",
                nodes
                    .iter()
                    .map(|n| redact(n))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `REDIS_CLUSTER_NODES` as URLs: `host:port` becomes `redis://host:port`, URLs stay as given.
pub fn parse_nodes(raw: &str) -> Result<Vec<String>, RedisTargetError> {
    let mut nodes = Vec::new();
    for item in raw.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(RedisTargetError::BadNode(item.to_owned()));
        }
        let (url, bare) = if item.contains("://") {
            (item.to_owned(), false)
        } else {
            (format!("redis://{item}"), true)
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RedisTargetError::BadNode(redact(item)));
        };
        let host_port = rest.rsplit('@').next().unwrap_or_default();
        let host_port = host_port.split(['/', '?']).next().unwrap_or_default();
        // `host:port`, or a URL whose port may be left out (6379).
        let address_ok = match host_port.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
            None => !bare && !host_port.is_empty(),
        };
        if !matches!(scheme, "redis" | "rediss") || !address_ok {
            return Err(RedisTargetError::BadNode(redact(item)));
        }
        nodes.push(url);
    }
    Ok(nodes)
}

/// Hides a password in `scheme://user:password@host...`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_one_or_the_other_but_not_both() {
        assert_eq!(RedisTarget::from_settings(None, Some("  ")), Ok(None));
        assert_eq!(
            RedisTarget::from_settings(Some("redis://h:1"), None),
            Ok(Some(RedisTarget::Single("redis://h:1".into())))
        );
        assert_eq!(
            RedisTarget::from_settings(Some("redis://h:1"), Some("h:2")),
            Err(RedisTargetError::Both)
        );
        assert_eq!(
            RedisTarget::from_settings(Some(""), Some("a:1, rediss://u:p@b:2/0")),
            Ok(Some(RedisTarget::Cluster(vec![
                "redis://a:1".into(),
                "rediss://u:p@b:2/0".into()
            ])))
        );
    }

    #[test]
    fn bad_nodes_are_refused_without_their_password() {
        for bad in ["a", "a:", ":1", "a:x", "a:1,,b:2", "http://a:1", "a:70000"] {
            assert!(parse_nodes(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_nodes("redis://a").expect("default port"),
            ["redis://a"]
        );
        let error = parse_nodes("redis://u:secret@").expect_err("no host");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn describe_hides_passwords() {
        let target =
            RedisTarget::Cluster(vec!["redis://u:secret@a:1".into(), "redis://b:2".into()]);
        assert_eq!(
            target.describe(),
            "redis cluster (seeds redis://u:***@a:1,redis://b:2)"
        );
        assert!(!format!("{target:?}").contains("secret"));
    }
}
