//! The tag browser's routes: one folder of the tag tree at a time
//! (`/api/tree`), tags matching a glob (`/api/search`), and current values
//! (`/api/current`). gRPC has no call for a folder, so these read the
//! node's config cache directly, walking names without copying them (a
//! folder of 100,000 tags is counted, not listed), and show only the tags
//! the caller may see, as every listing does. They read this node's state
//! as applied (local consistency): a browser polls and subscribes, it does
//! not need a read barrier per page.

use axum::extract::{Query, State};
use bifrost_model::pattern::Pattern;
use bifrost_model::{Permission, Tag};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::routes::Body;
use super::session::Ctx;
use super::{json as to_json, JsonAnswer, WebError, WebState};
use crate::auth::Caller;

/// Children or tags a page may ask for at once.
const MAX_LIMIT: usize = 2_000;
const DEFAULT_LIMIT: usize = 500;
/// Tags whose current values a page may ask for at once.
pub const MAX_CURRENT: usize = 5_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

/// One child of a folder: a sub-folder with its number of visible tags,
/// or a tag.
enum Child {
    Folder { path: String, tags: usize },
    Tag(Tag),
}

/// `GET /api/tree?prefix=P&after=A&limit=N`.
pub async fn tree(
    State(s): State<WebState>,
    ctx: Ctx,
    Query(q): Query<TreeQuery>,
) -> Result<JsonAnswer, WebError> {
    let caller = ctx.caller(&s).await?;
    caller.check(Permission::Read, None)?;
    if !(q.prefix.is_empty() || q.prefix.ends_with('/')) {
        return Err(WebError::bad_request(format!(
            "prefix '{}' must be empty (the root) or end with '/'",
            q.prefix
        )));
    }
    let limit = limit(q.limit)?;
    let (children, more) = folder(&s, &caller, &q.prefix, q.after.as_deref(), limit);
    let children: Vec<Json> = children
        .into_iter()
        .map(|c| match c {
            Child::Folder { path, tags } => json!({
                "kind": "folder",
                "segment": path[q.prefix.len()..path.len() - 1],
                "path": path,
                "tags": tags,
            }),
            Child::Tag(t) => json!({
                "kind": "tag",
                "segment": t.name[q.prefix.len()..],
                "path": t.name,
                "tag": tag_json(&s, &caller, &t),
            }),
        })
        .collect();
    Ok(JsonAnswer(
        json!({"prefix": q.prefix, "children": children, "more": more}),
    ))
}

/// The children of folder `prefix` after `after`, at most `limit`, and
/// whether more follow.
fn folder(
    s: &WebState,
    caller: &Caller,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<Child>, bool) {
    let mut walk = FolderWalk {
        prefix,
        after,
        limit,
        children: vec![],
        more: false,
    };
    s.api
        .node
        .state()
        .visit_tags_with_prefix(prefix, |t| !caller.visible(&t.name) || walk.offer(t));
    (walk.children, walk.more)
}

/// Groups the tags under a folder, offered in name order, into its
/// children: a folder's tags are contiguous in that order (they share its
/// path as a prefix), and its path sorts just before them, so `after`
/// compares the same way for folders and tags.
struct FolderWalk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    children: Vec<Child>,
    more: bool,
}

impl FolderWalk<'_> {
    /// Takes the next tag; `false` once the page is full.
    fn offer(&mut self, t: &Tag) -> bool {
        let path = match t.name[self.prefix.len()..].find('/') {
            Some(i) => &t.name[..self.prefix.len() + i + 1],
            None => t.name.as_str(),
        };
        if self.after.is_some_and(|a| path <= a) {
            return true;
        }
        if let Some(Child::Folder { path: last, tags }) = self.children.last_mut() {
            if last == path {
                *tags += 1;
                return true;
            }
        }
        if self.children.len() == self.limit {
            self.more = true;
            return false;
        }
        self.children.push(if path.len() < t.name.len() {
            Child::Folder {
                path: path.to_string(),
                tags: 1,
            }
        } else {
            Child::Tag(t.clone())
        });
        true
    }
}

fn limit(asked: Option<usize>) -> Result<usize, WebError> {
    match asked.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(WebError::bad_request(format!(
            "limit {n} is out of range: 1 to {MAX_LIMIT}"
        ))),
    }
}

/// A tag as the pages see it, for this caller.
fn tag_json(s: &WebState, caller: &Caller, t: &Tag) -> Json {
    let state = s.api.node.state();
    let device = state.device(&t.device);
    let owner = state.assignment(&t.device).map(|a| a.node);
    let can_write = caller.check(Permission::WriteDevice, Some(&t.name)).is_ok();
    to_json::tag(t, device.as_ref(), owner, can_write)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    glob: String,
    /// The last tag of the previous page.
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/search?glob=G&after=A&limit=N`: visible tags matching a glob,
/// by name, after tag `A`.
pub async fn search(
    State(s): State<WebState>,
    ctx: Ctx,
    Query(q): Query<SearchQuery>,
) -> Result<JsonAnswer, WebError> {
    let caller = ctx.caller(&s).await?;
    caller.check(Permission::Read, None)?;
    let pattern = Pattern::glob(&q.glob).map_err(WebError::bad_request)?;
    let limit = limit(q.limit)?;
    let mut found = vec![];
    let mut more = false;
    s.api
        .node
        .state()
        .visit_tags_with_prefix(pattern.literal_prefix(), |t| {
            let past = q.after.as_deref().is_none_or(|a| t.name.as_str() > a);
            if past && pattern.matches(&t.name) && caller.visible(&t.name) {
                if found.len() == limit {
                    more = true;
                    return false;
                }
                found.push(t.clone());
            }
            true
        });
    let tags: Vec<Json> = found.iter().map(|t| tag_json(&s, &caller, t)).collect();
    Ok(JsonAnswer(json!({"tags": tags, "more": more})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrentBody {
    tags: Vec<String>,
}

/// `POST /api/current`: the current readings of the tags named, as the
/// gRPC call gives them (each tag must be visible to the caller; tags
/// without a reading are left out, an unknown tag is an error).
pub async fn current(
    State(s): State<WebState>,
    ctx: Ctx,
    Body(body): Body<CurrentBody>,
) -> Result<JsonAnswer, WebError> {
    let caller = ctx.caller(&s).await?;
    if body.tags.len() > MAX_CURRENT {
        return Err(WebError::bad_request(format!(
            "{} tags asked for; at most {MAX_CURRENT} at once",
            body.tags.len()
        )));
    }
    let local = bifrost_proto::v1::Consistency::Local as i32;
    let readings = s.api.current_readings(&caller, &body.tags, local).await?;
    let readings: Vec<Json> = readings.iter().map(to_json::reading).collect();
    Ok(JsonAnswer(json!({ "readings": readings })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_model::DataType;

    /// The children of `prefix` among `names` (sorted here), as
    /// `path:count` for folders and `path` for tags.
    fn walk(
        names: &[&str],
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let mut tags: Vec<Tag> = names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| Tag::new(*n, "plc", "hr:0", DataType::F64))
            .collect();
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        let mut w = FolderWalk {
            prefix,
            after,
            limit,
            children: vec![],
            more: false,
        };
        for t in &tags {
            if !w.offer(t) {
                break;
            }
        }
        let shown = w
            .children
            .iter()
            .map(|c| match c {
                Child::Folder { path, tags } => format!("{path}:{tags}"),
                Child::Tag(t) => t.name.clone(),
            })
            .collect();
        (shown, w.more)
    }

    const PLANT: &[&str] = &[
        "a/x/1", "a/x/2", "a/y", "a-b", "a.c", "a/x/3", "b", "a/z/q/1", "a0",
    ];

    #[test]
    fn a_folder_lists_sub_folders_with_their_counts_and_its_own_tags() {
        let (root, more) = walk(PLANT, "", None, 10);
        assert_eq!(root, ["a-b", "a.c", "a/:5", "a0", "b"]);
        assert!(!more);
        let (a, _) = walk(PLANT, "a/", None, 10);
        assert_eq!(a, ["a/x/:3", "a/y", "a/z/:1"]);
    }

    #[test]
    fn pages_continue_after_the_last_child_without_repeating_or_skipping() {
        let (page1, more) = walk(PLANT, "", None, 2);
        assert_eq!(
            (page1.clone(), more),
            (vec!["a-b".to_string(), "a.c".into()], true)
        );
        let (page2, more) = walk(PLANT, "", Some("a.c"), 2);
        assert_eq!((page2, more), (vec!["a/:5".to_string(), "a0".into()], true));
        let (page3, more) = walk(PLANT, "", Some("a0"), 2);
        assert_eq!((page3, more), (vec!["b".to_string()], false));
        // After a folder: its tags are all skipped, and counted nowhere.
        let (after_folder, _) = walk(PLANT, "", Some("a/"), 10);
        assert_eq!(after_folder, ["a0", "b"]);
    }

    #[test]
    fn a_full_page_still_counts_its_last_folder_whole() {
        let (page, more) = walk(PLANT, "a/", None, 1);
        assert_eq!((page, more), (vec!["a/x/:3".to_string()], true));
    }
}
