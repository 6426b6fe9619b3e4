//! The inference queue: requests' pairs go in, one worker thread packs them across requests by
//! token budget, runs the model and answers each request on its own channel.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use rerank::{EncodedPair, LayerPlan, Reranker};
use tokio::sync::oneshot;

/// The answer to one job: raw logits in the job's order, or what went wrong.
pub type JobResult = Result<Vec<f32>, String>;

/// Encoded pairs waiting for the model.
struct Job {
    pairs: Vec<EncodedPair>,
    /// The layerwise rerankers' cutoff and compression (jobs share a batch only when equal).
    plan: Option<LayerPlan>,
    tokens: usize,
    reply: oneshot::Sender<JobResult>,
    /// When it was queued (for `te_request_queue_duration`).
    queued: Instant,
}

/// Handle to the inference worker.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
}

impl Queue {
    /// Starts the worker thread. `max_batch_tokens` bounds the tokens of one forward pass
    /// (a single job larger than that still runs, alone).
    pub fn start(reranker: Arc<Reranker>, max_batch_tokens: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("rerank-inference".into())
            .spawn(move || {
                worker(&reranker, &rx, max_batch_tokens);
                flag.store(false, Ordering::SeqCst);
            })
            .expect("spawn inference thread");
        Self { tx, alive }
    }

    /// True while the worker runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues pairs, scored at `plan`'s one cutoff (`None`: the model's default); the
    /// receiver yields their logits. `None` when the worker is gone.
    pub fn submit(
        &self,
        pairs: Vec<EncodedPair>,
        plan: Option<LayerPlan>,
    ) -> Option<oneshot::Receiver<JobResult>> {
        let (reply, rx) = oneshot::channel();
        let tokens = pairs.iter().map(|p| p.ids.len()).sum();
        queue_size(1.0);
        match self.tx.send(Job {
            pairs,
            plan,
            tokens,
            reply,
            queued: Instant::now(),
        }) {
            Ok(()) => Some(rx),
            Err(_) => {
                queue_size(-1.0);
                None
            }
        }
    }
}

/// Takes jobs until the channel closes, packing as many as fit the token budget per pass (and
/// share the first one's layer plan).
fn worker(reranker: &Reranker, rx: &mpsc::Receiver<Job>, max_batch_tokens: usize) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut jobs = vec![first];
        let mut tokens = jobs[0].tokens;
        while let Ok(job) = rx.try_recv() {
            if tokens + job.tokens > max_batch_tokens || job.plan != jobs[0].plan {
                carried = Some(job);
                break;
            }
            tokens += job.tokens;
            jobs.push(job);
        }
        queue_size(-(jobs.len() as f64));
        // Pairs of clients that went away are not computed.
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            run_batch(reranker, jobs);
        }
    }
}

/// One forward pass over every pair of `jobs`; each job gets its slice of the logits.
fn run_batch(reranker: &Reranker, jobs: Vec<Job>) {
    let plan = jobs[0].plan.clone();
    let mut pairs = Vec::new();
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        metrics::histogram!("te_request_queue_duration").record(job.queued.elapsed().as_secs_f64());
        replies.push((job.reply, job.pairs.len()));
        pairs.extend(job.pairs);
    }
    let tokens: usize = pairs.iter().map(|p| p.ids.len()).sum();
    metrics::histogram!("rerank_batch_size").record(pairs.len() as f64);
    metrics::histogram!("rerank_batch_tokens").record(tokens as f64);
    metrics::histogram!("te_batch_next_size").record(pairs.len() as f64);
    metrics::histogram!("te_batch_next_tokens").record(tokens as f64);
    let start = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        reranker
            .score_encoded_plan(&pairs, pairs.len().max(1), plan.as_ref())
            .map(|mut layers| layers.pop().unwrap_or_default())
    }));
    metrics::histogram!("te_request_inference_duration").record(start.elapsed().as_secs_f64());
    let scores = match result {
        Ok(Ok(scores)) => scores,
        Ok(Err(err)) => return fail_all(replies, err.to_string()),
        Err(_) => return fail_all(replies, "the model panicked on this batch".into()),
    };
    let mut rest = scores.as_slice();
    for (reply, n) in replies {
        let (mine, tail) = rest.split_at(n);
        rest = tail;
        let _ = reply.send(Ok(mine.to_vec()));
    }
}

/// Jobs waiting for the worker: ours (`rerank_queue_depth`) and TEI's name (`te_queue_size`).
fn queue_size(change: f64) {
    metrics::gauge!("rerank_queue_depth").increment(change);
    metrics::gauge!("te_queue_size").increment(change);
}

fn fail_all(replies: Vec<(oneshot::Sender<JobResult>, usize)>, message: String) {
    for (reply, _) in replies {
        let _ = reply.send(Err(message.clone()));
    }
}
