//! Latency of the book page (`GET /view/book/1`: store read, one counter increment, the
//! gateway's comments read, template) under concurrent load.
//!
//! Self-contained (library + real counter, embedded, demo data; the gateway's comments read is
//! a small stub serving two comments, so gateway-side costs are not in the figure):
//!     cargo bench -p library --bench page_latency -- --requests 5000 --concurrency 32
//! Against a running stack instead:
//!     cargo bench -p library --bench page_latency -- --url http://127.0.0.1:3002/view/book/1

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

struct Args {
    url: Option<String>,
    requests: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut parsed = Args {
        url: None,
        requests: 3000,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--url" => parsed.url = it.next(),
            "--requests" => {
                parsed.requests = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(parsed.requests)
            }
            "--concurrency" => {
                parsed.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(parsed.concurrency)
            }
            _ => {} // cargo bench passes --bench
        }
    }
    parsed
}

async fn spawn_stack() -> anyhow::Result<(String, Vec<tempfile::TempDir>)> {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/demo");
    let counter_dir = tempfile::tempdir()?;
    let counter = counter::Application::build(counter::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        data_dir: counter_dir.path().to_path_buf(),
        workers: 1,
        ..counter::Settings::default()
    })
    .await?;
    let counter_url = format!("http://127.0.0.1:{}", counter.port());
    tokio::spawn(counter.run_until_stopped(std::future::pending()));

    let gateway_url = spawn_gateway_stub()?;

    let library_dir = tempfile::tempdir()?;
    let library = library::Application::build(library::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        counter_url,
        gateway_url,
        data_dir: library_dir.path().to_path_buf(),
        demo_dir: demo.into(),
        workers: 2,
        app_env: service_kit::secrets::AppEnv::Development,
        ..library::Settings::default()
    })
    .await?;
    let url = format!("http://127.0.0.1:{}/view/book/1", library.port());
    tokio::spawn(library.run_until_stopped(std::future::pending()));
    Ok((url, vec![counter_dir, library_dir]))
}

/// `GET /rooms/{room}/comments` with two fixed comments.
fn spawn_gateway_stub() -> anyhow::Result<String> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(|| {
        App::new().route(
            "/rooms/{room}/comments",
            web::get().to(|room: web::Path<String>| async move {
                let comment = |seq: u64, text: &str| {
                    serde_json::json!({"id": format!("c{seq}"), "seq": seq, "room": room.as_str(),
                        "author": {"id": "JD", "name": "John Doe"}, "text": text,
                        "createdAt": "2024-02-01T12:00:00.000Z"})
                };
                HttpResponse::Ok().json(serde_json::json!({
                    "comments": [comment(1, "Первый комментарий"), comment(2, "<b>second</b>")],
                    "more": false
                }))
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(format!("http://127.0.0.1:{port}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let (url, _dirs) = match args.url.clone() {
        Some(url) => (url, Vec::new()),
        None => spawn_stack().await?,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    for _ in 0..50 {
        client.get(&url).send().await?.bytes().await?;
    }

    let per_task = args.requests.div_ceil(args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut failures = 0usize;
            for _ in 0..per_task {
                let sent = Instant::now();
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                    }
                    _ => failures += 1,
                }
                histogram.record(sent.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok((histogram, failures))
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures = 0;
    for task in tasks {
        let (histogram, failed) = task.await??;
        all.add(histogram)?;
        failures += failed;
    }
    let elapsed = started.elapsed();
    let ms = |q: f64| Duration::from_micros(all.value_at_quantile(q)).as_secs_f64() * 1000.0;
    println!("GET {url}");
    println!(
        "requests {} concurrency {} failures {failures} in {:.2}s -> {:.0} req/s",
        all.len(),
        args.concurrency,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        Duration::from_micros(all.max()).as_secs_f64() * 1000.0
    );
    Ok(())
}
