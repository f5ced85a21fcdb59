//! Webhook settings as the sender uses them, checked at start-up: every URL
//! passes the coordinator's URL policy (the one recordings pass), and a
//! secret is given whenever a URL is.

use std::path::Path;
use std::time::Duration;

use recfleet_protocol::egress::UrlPolicy;

use super::retry::RetryPolicy;

/// The variable that holds the signing secret (never a setting, so that
/// `--print-config` and logs cannot show it).
pub const SECRET_ENV: &str = "RECFLEET_WEBHOOK_SECRET";

/// The signing secret; its `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything the sender needs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where every event goes.
    pub urls: Vec<String>,
    /// Signs the bodies.
    pub secret: Secret,
    /// Backoff and retry window.
    pub retry: RetryPolicy,
    /// Attempts in flight at once, at most.
    pub in_flight: usize,
    /// One attempt's deadline (connect, send, answer).
    pub timeout: Duration,
}

/// The webhook part of the coordinator's settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Retry window.
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    pub in_flight: usize,
    /// One attempt's deadline.
    pub timeout: Duration,
}

/// The checked configuration, or `None` when no URL is configured.
/// `env_secret` is the value of [`SECRET_ENV`]; `secret_file` a file that
/// holds the secret instead (trailing whitespace trimmed). Errors say what
/// to fix; they never quote the secret.
pub fn check(
    urls: &[String],
    policy: &UrlPolicy,
    env_secret: Option<String>,
    secret_file: Option<&Path>,
    limits: Limits,
) -> Result<Option<WebhookConfig>, String> {
    if urls.is_empty() {
        return Ok(None);
    }
    for url in urls {
        policy
            .check_operator_url(url)
            .map_err(|why| format!("webhook URL \"{url}\" is refused: {why}"))?;
    }
    let secret = match (secret_file, env_secret) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| {
                format!(
                    "cannot read the webhook secret file {}: {e}",
                    path.display()
                )
            })?
            .trim_end()
            .to_string(),
        (None, Some(s)) => s,
        (None, None) => {
            return Err(format!(
                "webhook URLs are set but no secret: set {SECRET_ENV} or --webhook-secret-file"
            ))
        }
    };
    if secret.is_empty() {
        return Err("the webhook secret is empty".into());
    }
    if limits.in_flight == 0 {
        return Err("webhook_in_flight must be at least 1".into());
    }
    Ok(Some(WebhookConfig {
        urls: urls.to_vec(),
        secret: Secret(secret.into_bytes()),
        retry: limits.retry,
        in_flight: limits.in_flight,
        timeout: limits.timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            retry: RetryPolicy::default(),
            in_flight: 4,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn urls_pass_the_url_policy_and_need_a_secret() {
        let p = UrlPolicy::default();
        assert!(check(&[], &p, None, None, limits()).unwrap().is_none());
        let ok = vec!["https://platform.example/hooks".to_string()];
        let c = check(&ok, &p, Some("s3cret".into()), None, limits())
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), b"s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = check(&ok, &p, None, None, limits()).unwrap_err();
        assert!(e.contains(SECRET_ENV), "{e}");
        let meta = vec!["http://169.254.169.254/latest".to_string()];
        let e = check(&meta, &p, Some("s".into()), None, limits()).unwrap_err();
        assert!(
            e.contains("169.254.169.254") && e.contains("refused"),
            "{e}"
        );
        let allow = UrlPolicy {
            allowed_hosts: vec!["*.school.example".into()],
            ..Default::default()
        };
        assert!(check(&ok, &allow, Some("s".into()), None, limits()).is_err());
        let ftp = vec!["ftp://platform.example/".to_string()];
        assert!(check(&ftp, &p, Some("s".into()), None, limits()).is_err());
    }

    #[test]
    fn the_secret_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let ok = vec!["https://platform.example/hooks".to_string()];
        let c = check(
            &ok,
            &UrlPolicy::default(),
            Some("from-env".into()),
            Some(&f),
            limits(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.secret.expose(), b"from-file");
    }
}
