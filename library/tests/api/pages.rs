use serde_json::Value;

use crate::helpers::{Backend, Options, book_form, extract_csrf, spawn_app, spawn_with};

#[tokio::test]
async fn root_redirects_to_view() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.get("/").await;
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/view");
}

#[tokio::test]
async fn catalogue_shows_books_and_server_rendered_index_comments_escaped() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("JD").await;
    app.create_book("<script>alert(1)</script> & friends").await;

    let (status, html) = app.get_text("/view").await;
    assert_eq!(status, 200);
    // The title is escaped, never live markup.
    assert!(
        !html.contains("<script>alert(1)</script>"),
        "raw title in page"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; friends")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends")
    );
    // The comments root and what the script needs.
    assert!(html.contains(r#"id="comments""#));
    assert!(html.contains(r#"data-room="index""#));
    assert!(
        html.contains(r#"data-gateway-url="ws://127.0.0.1:9/ws""#),
        "GATEWAY_PUBLIC_URL verbatim"
    );
    assert!(html.contains(r#"data-username="JD""#));
    assert!(html.contains(r#"data-token-url="/api/v1/user/token""#));
    assert!(html.contains(r#"<script type="module" src="/static/js/comments.js"></script>"#));
    // Existing comments, own ones marked, text escaped.
    assert!(
        html.contains(
            r#"<li class="comment own" id="comment-c1" data-seq="1" data-id="c1" data-author="JD" data-reactions="{}">"#
        ),
        "{html}"
    );
    assert!(
        html.contains(
            r#"<li class="comment" id="comment-c2" data-seq="2" data-id="c2" data-author="mallory" data-reactions="{}">"#
        )
    );
    assert!(html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"));
    assert!(!html.contains("<script>alert('x')</script>"));
    assert!(
        !html.contains("Book one comment"),
        "room 1 comments stay on book 1"
    );
}

#[tokio::test]
async fn signed_out_pages_have_an_empty_username_and_no_form() {
    let app = spawn_app(Backend::Embedded).await;
    let (status, html) = app.get_text("/view").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-username="""#));
    assert!(!html.contains("comment-form"));
    assert!(!html.contains("class=\"comment own\""));
}

#[tokio::test]
async fn book_page_counts_one_view_per_page_view_and_shows_its_room() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("JD").await;
    let book = app.create_book("Counted").await;
    let id = book["id"].as_u64().expect("id");
    assert_eq!(id, 1);

    let (status, html) = app.get_text("/view/book/1").await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<dd class="book-views" id="book-views">1</dd>"#),
        "{html}"
    );
    assert!(html.contains(r#"data-room="1""#));
    assert!(html.contains("Book one comment"));
    assert!(
        !html.contains("Hello everyone"),
        "index comments stay on /view"
    );
    let (_, html) = app.get_text("/view/book/1").await;
    assert!(html.contains(r#"<dd class="book-views" id="book-views">2</dd>"#));

    // The API reads views without counting.
    let body: Value = app.get("/api/v1/book/1").await.json().await.expect("json");
    assert_eq!(body["views"], 2);
    let body: Value = app.get("/api/v1/book/1").await.json().await.expect("json");
    assert_eq!(body["views"], 2);
    let (_, html) = app.get_text("/view/book").await;
    assert!(html.contains("<td>2</td>"));
}

#[tokio::test]
async fn login_and_signup_forms_need_the_csrf_token() {
    let app = spawn_app(Backend::Embedded).await;
    app.signup("trinity").await;

    // Without the token: refused.
    let response = app
        .client
        .post(app.url("/view/user/login"))
        .form(&[("username", "trinity"), ("password", "pw-trinity-secret")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);

    // With a wrong password: the form again, 401.
    let token = app.csrf_from("/view/user/login").await;
    let response = app
        .client
        .post(app.url("/view/user/login"))
        .form(&[
            ("username", "trinity"),
            ("password", "nope"),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 401);

    // With the token: signed in, on to my page.
    let response = app
        .client
        .post(app.url("/view/user/login"))
        .form(&[
            ("username", "trinity"),
            ("password", "pw-trinity-secret"),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/view/user/me");
    let (status, html) = app.get_text("/view/user/me").await;
    assert_eq!(status, 200);
    assert!(html.contains("trinity@example.com"));

    // Sign out needs the (new) token too.
    let response = app
        .client
        .post(app.url("/view/user/logout"))
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    let token = app.csrf_from("/view/user/me").await;
    let response = app
        .client
        .post(app.url("/view/user/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    let response = app.get("/view/user/me").await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/view/user/login");
}

#[tokio::test]
async fn signup_page_creates_an_account_and_rejects_bad_forms() {
    let app = spawn_app(Backend::Embedded).await;
    let token = app.csrf_from("/view/user/signup").await;
    let response = app
        .client
        .post(app.url("/view/user/signup"))
        .form(&[
            ("username", "bad name"),
            ("fullname", "X"),
            ("email", "x@example.com"),
            ("password", "pw"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let html = response.text().await.expect("body");
    assert!(html.contains("invalid username"));

    let response = app
        .client
        .post(app.url("/view/user/signup"))
        .form(&[
            ("username", "oracle"),
            ("fullname", "The <Oracle>"),
            ("email", "o@example.com"),
            ("password", "pw-oracle"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    let (status, html) = app.get_text("/view/user/profile/oracle").await;
    assert_eq!(status, 200);
    assert!(html.contains("The &lt;Oracle&gt;"));
    assert!(!html.contains("The <Oracle>"));
}

#[tokio::test]
async fn book_forms_create_update_and_delete() {
    let app = spawn_app(Backend::Embedded).await;

    // Signed out: the form shows, saving sends you to sign in.
    let (status, html) = app.get_text("/view/book/create").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"enctype="multipart/form-data""#));
    assert!(html.contains(r#"name="fileCover""#) && html.contains(r#"name="fileBook""#));
    assert!(html.contains("signin-required"));
    let response = app
        .client
        .post(app.url("/view/book/create"))
        .multipart(book_form("Signed out", None, None))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/view/user/login");
    assert!(
        app.get("/api/v1/book")
            .await
            .json::<Vec<Value>>()
            .await
            .expect("json")
            .is_empty()
    );
    let response = app
        .client
        .post(app.url("/view/book/delete/1"))
        .form(&[("csrf_token", "x")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);

    app.signed_in("librarian").await;
    let token = app.csrf_from("/view/book/create").await;

    // A multipart form without the token is refused and leaves no file.
    let response = app
        .client
        .post(app.url("/view/book/create"))
        .multipart(book_form(
            "No token",
            Some(("c.png", b"png".to_vec())),
            None,
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        std::fs::read_dir(app.uploads_dir())
            .expect("uploads")
            .count(),
        0
    );

    // A bad form comes back with the error.
    let bad = book_form("", None, None).text("csrf_token", token.clone());
    let response = app
        .client
        .post(app.url("/view/book/create"))
        .multipart(bad)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.expect("body").contains("title"));

    // Create.
    let form = book_form(
        "Made in a form",
        Some(("c.png", b"png".to_vec())),
        Some(("b.txt", b"book".to_vec())),
    )
    .text("csrf_token", token.clone());
    let response = app
        .client
        .post(app.url("/view/book/create"))
        .multipart(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(location, "/view/book/1");

    // Update (the form is prefilled; only the title changes; files stay).
    let (status, html) = app.get_text("/view/book/update/1").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"value="Made in a form""#));
    let token = extract_csrf(&html).expect("token");
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", token.clone())
        .text("title", "Renamed")
        .part(
            "fileCover",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        );
    let response = app
        .client
        .post(app.url("/view/book/update/1"))
        .multipart(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    let book: Value = app.get("/api/v1/book/1").await.json().await.expect("json");
    assert_eq!(book["title"], "Renamed");
    assert_eq!(book["fileOriginalCover"], "c.png");
    assert_eq!(book["fileOriginalBook"], "b.txt");
    assert_eq!(app.get("/view/book/update/99").await.status().as_u16(), 404);

    // Delete: CSRF checked, then back to the list.
    let response = app
        .client
        .post(app.url("/view/book/delete/1"))
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    let response = app
        .client
        .post(app.url("/view/book/delete/1"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/view/book");
    assert_eq!(app.get("/view/book/1").await.status().as_u16(), 404);
    let response = app
        .client
        .post(app.url("/view/book/delete/1"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn demo_catalogue_static_files_and_downloads() {
    let mut options = Options::new(Backend::Embedded);
    options.demo = true;
    let app = spawn_with(options).await;
    let (status, html) = app.get_text("/view").await;
    assert_eq!(status, 200);
    for title in [
        "Война и мир",
        "JavaScript для чайников",
        "Туда и обратно",
        "Государство",
    ] {
        assert!(html.contains(title), "{title}");
    }
    let cover = app.get("/view/book/1/cover").await;
    assert_eq!(cover.status().as_u16(), 200);
    assert_eq!(cover.headers()["content-type"], "image/png");
    let download = app.get("/view/book/1/download").await;
    assert_eq!(download.status().as_u16(), 200);
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.contains("filename*=UTF-8''"), "{disposition}");

    let css = app.get("/static/css/style.css").await;
    assert_eq!(css.status().as_u16(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/css")
    );
    let js = app.get("/static/js/comments.js").await;
    if js.status().as_u16() == 200 {
        let content_type = js.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(content_type.contains("javascript"), "{content_type}");
    }
}

#[tokio::test]
async fn xss_in_titles_is_escaped_on_every_page_that_shows_them() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("mallory").await;
    let evil = r#""><img src=x onerror=alert(1)><script>alert(2)</script>"#;
    let response = app
        .post_json(
            "/api/v1/book",
            &serde_json::json!({"title": evil, "authors": evil, "description": evil}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    for path in ["/view", "/view/book", "/view/book/1", "/view/book/update/1"] {
        let (status, html) = app.get_text(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(!html.contains("<script>alert(2)"), "{path}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn readers_line_is_left_out_when_the_gateway_does_not_say() {
    let mut options = Options::new(Backend::Embedded);
    options.gateway_url = Some(crate::helpers::closed_url());
    let app = spawn_with(options).await;
    let (status, html) = app.get_text("/view").await;
    assert_eq!(status, 200);
    assert!(!html.contains("reading now"));
    assert!(html.contains(r#"<p class="comments-presence" id="comments-presence" hidden></p>"#));
}
