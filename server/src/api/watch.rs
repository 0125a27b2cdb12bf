//! Subscriptions over gRPC: a [`crate::watch`] subscription as a stream of
//! events; an error is the stream's last item.

use bifrost_proto::v1 as pb;
use tonic::Status;

use super::stream::ResponseStream;
use super::{convert, status, Api};
use crate::auth::Caller;
use crate::watch::{progress_interval, WatchRequest};
use bifrost_model::Permission;

/// A subscription of `caller`: tags named outright must be visible to
/// them; patterns (or no filter) match only the tags they may see.
pub fn watch(
    api: &Api,
    caller: &Caller,
    req: pb::WatchRequest,
) -> Result<ResponseStream<pb::WatchResponse>, Status> {
    for tag in &req.tags {
        caller.check(Permission::Read, Some(tag))?;
    }
    let sub = api
        .hub
        .subscribe(WatchRequest {
            tags: req.tags,
            patterns: req.patterns,
            from_revision: req.from_revision,
            progress: progress_interval(req.progress_ms),
            access: caller.restriction().cloned(),
            credential: api.auth.credential(caller),
        })
        .map_err(status::watch)?;
    let stream = futures::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        match sub.next().await? {
            Ok(event) => Some((Ok(convert::watch_event_pb(event)), Some(sub))),
            // The stream ends after its error.
            Err(e) => Some((Err(status::watch(e)), None)),
        }
    });
    Ok(Box::pin(stream))
}
