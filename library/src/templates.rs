//! Page templates (minijinja, embedded at build time, HTML autoescape on).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Output, State};
use serde::Serialize;

use crate::error::Error;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    (
        "_comments.html",
        include_str!("../templates/_comments.html"),
    ),
    (
        "_book_card.html",
        include_str!("../templates/_book_card.html"),
    ),
    ("index.html", include_str!("../templates/index.html")),
    ("books.html", include_str!("../templates/books.html")),
    ("book.html", include_str!("../templates/book.html")),
    (
        "book_form.html",
        include_str!("../templates/book_form.html"),
    ),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("profile.html", include_str!("../templates/profile.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The template environment, built once.
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every template is HTML: escape everything, whatever the file name.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_formatter(html_formatter);
        env.add_filter("short_time", short_time);
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                // A broken template is a build bug; the page that uses it answers 500.
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env
    })
}

/// Escapes `& < > " '` in strings, leaving `/` alone so URLs (like `GATEWAY_PUBLIC_URL`)
/// appear verbatim in the page; everything else goes through minijinja's own escaping.
fn html_formatter(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if matches!(state.auto_escape(), AutoEscape::Html)
        && !value.is_safe()
        && let Some(text) = value.as_str()
    {
        let mut escaped = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#x27;"),
                c => escaped.push(c),
            }
        }
        return out.write_str(&escaped).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "cannot write the page")
        });
    }
    minijinja::escape_formatter(out, state, value)
}

/// `2024-02-01T12:05:30.000Z` -> `2024-02-01 12:05 UTC`; other text is left as it is.
fn short_time(value: String) -> String {
    let bytes = value.as_bytes();
    if value.len() >= 16 && value.is_ascii() && bytes.get(10) == Some(&b'T') {
        format!("{} {} UTC", &value[..10], &value[11..16])
    } else {
        value
    }
}

/// Renders `name` with `ctx`.
pub fn render(name: &str, ctx: &impl Serialize) -> Result<String, Error> {
    let template = env()
        .get_template(name)
        .map_err(|e| Error::Internal(anyhow::anyhow!("template {name}: {e}")))?;
    template
        .render(Value::from(Serde(ctx)))
        .map_err(|e| Error::Internal(anyhow::anyhow!("rendering {name}: {e:#}")))
}

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Renders a page, or the error page when rendering fails.
pub fn page(status: StatusCode, name: &str, ctx: &impl Serialize) -> HttpResponse {
    match render(name, ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = ?e, "page rendering failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
            )
        }
    }
}

#[derive(Serialize)]
struct ErrorContext<'a> {
    page_title: &'a str,
    status: u16,
    heading: &'a str,
    message: &'a str,
}

/// The HTML error page (404 for unknown pages and books, and every other page error).
pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let heading = status.canonical_reason().unwrap_or("Error");
    let message = if status.is_server_error() {
        "Something went wrong on our side. Please try again later."
    } else {
        message
    };
    let ctx = ErrorContext {
        page_title: heading,
        status: status.as_u16(),
        heading,
        message,
    };
    match render("error.html", &ctx) {
        Ok(body) => html(status, body),
        Err(_) => HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(format!("{} {heading}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_templates_compile() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn escapes_by_default() {
        let body = render(
            "error.html",
            &ErrorContext {
                page_title: "t",
                status: 404,
                heading: "Not Found",
                message: "<script>alert(1)</script>",
            },
        )
        .expect("renders");
        assert!(!body.contains("<script>alert(1)"));
        assert!(body.contains("&lt;script&gt;"));
        let attr = env()
            .render_str(
                "<a title=\"{{ v }}\">",
                minijinja::context! { v => "ws://h/ws\"'<&" },
            )
            .expect("renders");
        assert_eq!(attr, "<a title=\"ws://h/ws&quot;&#x27;&lt;&amp;\">");
    }

    #[test]
    fn short_times() {
        assert_eq!(
            short_time("2024-02-01T12:05:30.000Z".into()),
            "2024-02-01 12:05 UTC"
        );
        assert_eq!(short_time("soon".into()), "soon");
    }
}
