//! `rerank serve`: the HTTP server, with graceful shutdown on SIGINT/SIGTERM within a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::ServeArgs;
use crate::cmd::{load_embedder, load_reranker};
use crate::http::server::{self, ConnectionLimits, Shutdown};
use crate::http::{
    app, check_served_name, sanitize_served_name, AppState, ServedEmbedder, ServerConfig,
};

/// Checks the flags, loads the model, binds, serves until a signal, finishes in-flight
/// requests (for at most `--shutdown-timeout`), returns.
pub fn run(args: ServeArgs) -> Result<()> {
    init_logging();
    let config = server_config(&args)?;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        max_connections: args.max_connections as usize,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    let reranker = match &args.model {
        Some(model) => {
            let reranker = Arc::new(load_reranker(model, &args.run)?);
            reranker.check_truncation(config.truncation)?;
            Some(reranker)
        }
        None => None,
    };
    let embedder = match &args.embedding_model {
        Some(model) => Some(ServedEmbedder {
            embedder: Arc::new(load_embedder(
                model,
                args.run.threads,
                args.run.dtype,
                None,
            )?),
            name: embedding_name(&args, model)?,
        }),
        None => None,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if let Some(reranker) = &reranker {
            tracing::info!(
                "serving reranker {} as '{}' on http://{local}",
                reranker.model_id(),
                config.served_model_name
            );
            tracing::debug!("linear layers run on {}", reranker.kernel());
        }
        if let Some(served) = &embedder {
            tracing::info!(
                "serving embedder {} as '{}' on http://{local}",
                served.embedder.model_id(),
                served.name
            );
        }
        // One line on stdout for scripts that start us on port 0.
        println!("listening on http://{local}");
        let state = AppState::with_models(reranker, embedder, config);
        anyhow::Ok(server::serve(listener, app(state), limits, shutdown_signal()).await)
    })?;
    // Blocking tasks of abandoned requests (tokenization) are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Shutdown::Drained => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Shutdown::Abandoned {
            requests,
            connections,
        } => bail!(
            "shutdown deadline of {} s passed: abandoned {requests} requests in flight on \
             {connections} open connections",
            args.shutdown_timeout
        ),
    }
}

/// The embedder's served name: --served-embedding-model-name, or --served-model-name when no
/// reranker is served, else the model's short name.
fn embedding_name(args: &ServeArgs, model: &str) -> Result<String> {
    let named = args.served_embedding_model_name.as_ref().or(args
        .served_model_name
        .as_ref()
        .filter(|_| args.model.is_none()));
    match named {
        Some(name) => {
            check_served_name(name).map_err(anyhow::Error::msg)?;
            Ok(name.clone())
        }
        None => Ok(default_served_name(model)),
    }
}

fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    let model = args
        .model
        .as_deref()
        .or(args.embedding_model.as_deref())
        .unwrap_or("model");
    let served_model_name = match &args.served_model_name {
        Some(name) => {
            check_served_name(name).map_err(anyhow::Error::msg)?;
            name.clone()
        }
        None => default_served_name(model),
    };
    Ok(ServerConfig {
        served_model_name,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_concurrent_requests: args.max_concurrent_requests as usize,
        max_client_batch_size: args.max_client_batch_size as usize,
        max_document_bytes: args.max_document_bytes as usize,
        max_documents: args.max_documents as usize,
        max_request_tokens: args.max_request_tokens as usize,
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        payload_limit: args.payload_limit as usize,
        max_batch_tokens: args.max_batch_tokens as usize,
        max_length: args.scoring.max_length as usize,
        query_max_length: args.scoring.query_max_length.map(|q| q as usize),
        truncation: args.scoring.truncation.truncation(),
        cors_allow_origins: args.cors_allow_origins.clone(),
    })
}

/// The folder's name, or the hub id's last part, made safe for a route.
fn default_served_name(model: &str) -> String {
    let name = Path::new(model.trim_end_matches('/'))
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model");
    sanitize_served_name(name)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RERANK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::default_served_name;

    #[test]
    fn served_name_defaults() {
        assert_eq!(
            default_served_name("BAAI/bge-reranker-base"),
            "bge-reranker-base"
        );
        assert_eq!(default_served_name("/models/my-reranker/"), "my-reranker");
        assert_eq!(default_served_name("local"), "local");
        assert_eq!(default_served_name("/models/{*x} :y"), "--x---y");
        assert_eq!(default_served_name("/"), "model");
    }
}
