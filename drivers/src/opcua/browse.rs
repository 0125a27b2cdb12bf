//! Browsing a server's address space: the children of one node (the Objects
//! folder by default) along hierarchical references, with each variable's
//! data type and writability read in one extra Read call.

use std::time::Duration;

use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, NodeClass,
    NodeId, ObjectId, ReadValueId, ReferenceTypeId, TimestampsToReturn, Variant,
};

use super::address::format_expanded;
use super::connection::Conn;
use super::convert::{data_type_of, status_name};
use super::service_error;
use crate::{BrowseItem, Error, Result};

/// Safety bound on BrowseNext rounds (a server with a broken continuation
/// point must not loop us forever).
const MAX_BROWSE_NEXT: usize = 1000;
/// AccessLevel bit for "the current value may be written".
const CURRENT_WRITE: u8 = 0x02;

pub(crate) async fn browse(
    conn: &Conn,
    node: NodeId,
    timeout: Duration,
) -> Result<Vec<BrowseItem>> {
    let session = &conn.session;
    let what = format!("browse {node}");
    let description = BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: NodeClass::Object as u32 | NodeClass::Variable as u32,
        result_mask: BrowseResultMask::All as u32,
    };
    let descriptions = [description];
    let call = session.browse(&descriptions, 0, None);
    let mut result = first(tokio::time::timeout(timeout, call).await, &what)?;
    let mut references = Vec::new();
    let mut rounds = 0;
    loop {
        if result.status_code.is_bad() {
            return Err(Error::Rejected(format!(
                "opcua: cannot browse {node}: {}",
                status_name(result.status_code)
            )));
        }
        references.extend(result.references.take().unwrap_or_default());
        let point: ByteString = result.continuation_point.clone();
        if point.is_null_or_empty() || rounds >= MAX_BROWSE_NEXT {
            break;
        }
        rounds += 1;
        let points = [point];
        let call = session.browse_next(false, &points);
        result = first(tokio::time::timeout(timeout, call).await, &what)?;
    }

    let namespaces = &conn.namespaces;
    let mut items: Vec<BrowseItem> = references
        .iter()
        .map(|r| BrowseItem {
            address: format_expanded(&r.node_id.node_id, &r.node_id.namespace_uri, namespaces),
            name: if r.display_name.text.is_null() || r.display_name.text.as_ref().is_empty() {
                r.browse_name.name.as_ref().to_string()
            } else {
                r.display_name.text.as_ref().to_string()
            },
            kind: match r.node_class {
                NodeClass::Object => "object",
                NodeClass::Variable => "variable",
                _ => "other",
            }
            .to_string(),
            data_type: None,
            writable: false,
        })
        .collect();

    // Data type, value rank and access level of the variables, when the
    // server names them in this namespace table (remote nodes are skipped).
    let variables: Vec<(usize, NodeId)> = references
        .iter()
        .enumerate()
        .filter(|(_, r)| r.node_class == NodeClass::Variable && r.node_id.server_index == 0)
        .filter_map(|(i, r)| {
            let id = if r.node_id.namespace_uri.is_null() {
                Some(r.node_id.node_id.clone())
            } else {
                namespaces
                    .get_index(r.node_id.namespace_uri.as_ref())
                    .map(|ns| NodeId::new(ns, r.node_id.node_id.identifier.clone()))
            };
            id.map(|id| (i, id))
        })
        .collect();
    const ATTRS: [AttributeId; 3] = [
        AttributeId::DataType,
        AttributeId::ValueRank,
        AttributeId::UserAccessLevel,
    ];
    for chunk in variables.chunks((conn.nodes_per_read / ATTRS.len()).max(1)) {
        let reads: Vec<ReadValueId> = chunk
            .iter()
            .flat_map(|(_, id)| ATTRS.iter().map(move |a| ReadValueId::new(id.clone(), *a)))
            .collect();
        let call = session.read(&reads, TimestampsToReturn::Neither, 0.0);
        let values = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(values)) => values,
            // The names are still worth showing without the details.
            Ok(Err(e)) => {
                tracing::warn!("opcua: reading variable attributes while browsing {node}: {e}");
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    "opcua: reading variable attributes while browsing {node} timed out"
                );
                continue;
            }
        };
        for ((index, _), attrs) in chunk.iter().zip(values.chunks(ATTRS.len())) {
            let good = |k: usize| {
                attrs
                    .get(k)
                    .filter(|dv| dv.status.is_none_or(|s| s.is_good()))
                    .and_then(|dv| dv.value.as_ref())
            };
            // Scalars only: ValueRank -1 (scalar); arrays have no Bifrost type.
            let scalar = !matches!(good(1), Some(Variant::Int32(rank)) if *rank != -1);
            if let (Some(Variant::NodeId(dt)), true) = (good(0), scalar) {
                items[*index].data_type = data_type_of(dt);
            }
            if let Some(Variant::Byte(access)) = good(2) {
                items[*index].writable = access & CURRENT_WRITE != 0;
            }
        }
    }
    Ok(items)
}

fn first<T>(
    r: std::result::Result<
        std::result::Result<Vec<T>, opcua::types::Error>,
        tokio::time::error::Elapsed,
    >,
    what: &str,
) -> Result<T> {
    match r {
        Ok(Ok(mut v)) if !v.is_empty() => Ok(v.swap_remove(0)),
        Ok(Ok(_)) => Err(Error::Rejected(format!(
            "opcua: {what}: the server returned no result"
        ))),
        Ok(Err(e)) => Err(service_error(what, e.status(), &e.to_string())),
        Err(_) => Err(Error::Timeout(format!("opcua: {what}: no answer in time"))),
    }
}

/// The Objects folder, where browsing starts.
pub(crate) fn objects_folder() -> NodeId {
    ObjectId::ObjectsFolder.into()
}
