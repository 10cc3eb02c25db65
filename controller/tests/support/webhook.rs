//! A webhook receiver on loopback: each POSTed JSON body is turned into a record (by the
//! test's own function, which may look at the world at that moment) and kept in order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::Value;

/// The records so far.
pub type Received<T> = Arc<Mutex<Vec<T>>>;

/// Serves `http://127.0.0.1:<port>/hook` until the returned task is aborted.
pub async fn receiver<T: Send + 'static>(
    record: impl Fn(Value) -> T + Clone + Send + Sync + 'static,
) -> (String, Received<T>, tokio::task::JoinHandle<()>) {
    let received: Received<T> = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (sink, record) = (sink.clone(), record.clone());
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or_default();
                sink.lock().unwrap().push(record(body));
                "ok"
            }
        }),
    );
    let (base, server) = serve_on_loopback(app).await;
    (format!("{base}/hook"), received, server)
}

/// Serves `app` on a free loopback port: `http://127.0.0.1:<port>` and the server's task.
pub async fn serve_on_loopback(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}
