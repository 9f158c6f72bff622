//! `GET /v1/events`: the daemon's lifecycle events as a stream.
//!
//! # Theory of operation
//!
//! The answer is one newline-delimited JSON object per event (a chunked
//! HTTP/1.1 body), Docker's `GET /events`: first the events of the ring
//! ([`crate::daemon::events`]) since `since`, then each new one as it
//! happens, until `until` passes or the client goes away. Both are Unix
//! times in seconds (a fraction allowed), as Docker's; `filters` is
//! Docker's JSON map (`{"type":["network"]}`). Anything else is a 400 in
//! the API's JSON error shape before a byte of the stream is sent.
//!
//! A stream may last longer than the API's whole-connection timeout
//! ([`crate::daemon::API_CONNECTION_TIMEOUT`]): the handler marks its
//! connection's [`StreamLease`], and the accept loop then lets that
//! connection run until its stream ends. The response says
//! `Connection: close`, so the exemption ends with the stream: no more
//! requests are read on that connection. The slot it holds is one of the
//! [`crate::daemon::MAX_API_CONNECTIONS`], and only callers outside every
//! sandbox get this far (the peer check), so this is no new way to hold
//! the daemon's connections.
//!
//! A client that does not read loses events (an `events-lost` record
//! says how many) instead of growing the daemon's memory: the body is
//! produced only as fast as hyper writes it, and the live channel keeps
//! at most [`crate::daemon::events::LIVE`] events for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Extension;
use tokio::sync::broadcast::error::RecvError;

use crate::daemon::error::ApiError;
use crate::daemon::events::{self, Event, Filter};
use crate::daemon::state::Daemon;

/// Per connection: set when it carries an event stream, which the
/// accept loop then exempts from the whole-connection timeout.
#[derive(Clone, Default)]
pub struct StreamLease(Arc<AtomicBool>);

impl StreamLease {
    /// Whether the connection carries an event stream.
    pub fn streaming(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

pub async fn events(
    State(d): State<Arc<Daemon>>,
    lease: Option<Extension<StreamLease>>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                events::parse_unix_time(s).map_err(|e| {
                    ApiError::bad_request(
                        format!("{what}: {e}"),
                        "e.g. since=1733340000 or until=1733340000.5 (`warren events --since 10m` computes it)",
                    )
                })
            })
            .transpose()
    };
    let since = time(&q.since, "since")?;
    let until = time(&q.until, "until")?;
    let filter = match q.filters.as_deref() {
        None | Some("") => Filter::default(),
        Some(f) => Filter::parse(f).map_err(|e| {
            ApiError::bad_request(
                e,
                r#"e.g. filters={"type":["network"],"event":["connect"]}"#,
            )
        })?,
    };
    let sub = d.events.subscribe(since);
    let now = events::now_nanos();
    // Until a time already past: the look back only, then the end.
    let deadline = match until {
        Some(u) if u <= now => None,
        Some(u) => Some(Some(
            tokio::time::Instant::now()
                + std::time::Duration::from_nanos(u64::try_from(u - now).unwrap_or(0)),
        )),
        None => Some(None),
    };
    let live = deadline.map(|dl| (sub.live, dl));
    if live.is_some() {
        if let Some(Extension(l)) = &lease {
            l.0.store(true, Ordering::Relaxed);
        }
    }
    let stream = Stream {
        lost: (sub.dropped > 0).then_some(sub.dropped),
        backlog: sub
            .backlog
            .into_iter()
            .filter(|e| until.map_or(true, |u| e.time_nano <= u))
            .collect(),
        live,
        until,
        filter,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        let line = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close")
        .body(Body::from_stream(body))
        .map_err(ApiError::internal)
}

/// What is left to send.
struct Stream {
    /// Events of the look back the ring no longer held.
    lost: Option<u64>,
    backlog: VecDeque<Arc<Event>>,
    /// The live events, and when they stop (`None`: never).
    live: Option<(
        tokio::sync::broadcast::Receiver<Arc<Event>>,
        Option<tokio::time::Instant>,
    )>,
    until: Option<i64>,
    filter: Filter,
}

impl Stream {
    /// The next line, or `None` at the end.
    async fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(n) = self.lost.take() {
            return Some(Event::lost(n, "ring").line());
        }
        while let Some(e) = self.backlog.pop_front() {
            if self.filter.matches(&e) {
                return Some(e.line());
            }
        }
        loop {
            let (rx, deadline) = self.live.as_mut()?;
            let got = match deadline {
                Some(dl) => tokio::select! {
                    r = rx.recv() => r,
                    () = tokio::time::sleep_until(*dl) => {
                        self.live = None;
                        return None;
                    }
                },
                None => rx.recv().await,
            };
            match got {
                Ok(e) if self.until.is_some_and(|u| e.time_nano > u) => {
                    self.live = None;
                    return None;
                }
                Ok(e) if self.filter.matches(&e) => return Some(e.line()),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Some(Event::lost(n, "slow").line()),
                Err(RecvError::Closed) => {
                    self.live = None;
                    return None;
                }
            }
        }
    }
}
