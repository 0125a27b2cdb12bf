//! Server-only types as API messages: query columns and cells, Raft members
//! and read consistency, subscription events, device write outcomes, browse
//! results and replica digests. Model records (devices, tags, readings,
//! values, assignments) convert in `bifrost_proto::convert`, shared with the
//! client.

use bifrost_proto::convert::{reading_to_pb, value_to_pb};
use bifrost_proto::v1 as pb;
use bifrost_raft::node::MemberInfo;
use bifrost_raft::Consistency;
use tonic::Status;

use crate::local::WriteOutcome;
use crate::query::{Cell, Column, ColumnType};
use crate::replica::Digests;
use crate::watch::Event;

/// The proto's consistency level; unspecified means linearizable.
pub fn consistency(c: i32) -> Result<Consistency, Status> {
    match pb::Consistency::try_from(c) {
        Ok(pb::Consistency::Unspecified) | Ok(pb::Consistency::Linearizable) => {
            Ok(Consistency::Linearizable)
        }
        Ok(pb::Consistency::Local) => Ok(Consistency::Local),
        Ok(pb::Consistency::Leader) => Ok(Consistency::Leader),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown consistency level {c}"
        ))),
    }
}

pub fn members_pb(members: Vec<MemberInfo>) -> Vec<pb::Member> {
    members
        .into_iter()
        .map(|m| pb::Member {
            id: m.id,
            addr: m.addr,
            role: m.role,
            peer_addr: m.peer,
        })
        .collect()
}

pub fn column_pb(c: &Column) -> pb::Column {
    pb::Column {
        name: c.name.clone(),
        r#type: column_type_pb(c.ty) as i32,
    }
}

fn column_type_pb(t: ColumnType) -> pb::ColumnType {
    match t {
        ColumnType::Any => pb::ColumnType::Any,
        ColumnType::Bool => pb::ColumnType::Bool,
        ColumnType::Int => pb::ColumnType::Int,
        ColumnType::Float => pb::ColumnType::Float,
        ColumnType::Text => pb::ColumnType::Text,
        ColumnType::Timestamp => pb::ColumnType::Timestamp,
    }
}

pub fn row_pb(cells: Vec<Cell>) -> pb::Row {
    pb::Row {
        cells: cells.into_iter().map(cell_pb).collect(),
    }
}

fn cell_pb(c: Cell) -> pb::Cell {
    use pb::cell::Kind;
    pb::Cell {
        kind: match c {
            Cell::Null => None,
            Cell::Bool(b) => Some(Kind::BoolValue(b)),
            Cell::Int(i) => Some(Kind::IntValue(i)),
            Cell::Float(f) => Some(Kind::FloatValue(f)),
            Cell::Text(t) => Some(Kind::TextValue(t)),
            Cell::Timestamp(us) => Some(Kind::TimestampUs(us)),
        },
    }
}

pub fn watch_event_pb(event: Event) -> pb::WatchResponse {
    use pb::watch_response::Event as E;
    let event = match event {
        Event::Started {
            revision,
            oldest_revision,
            node_id,
        } => E::Started(pb::WatchStarted {
            revision,
            node_id,
            oldest_revision,
        }),
        Event::Readings {
            readings,
            revision,
            applied_us,
        } => E::Readings(pb::WatchReadings {
            readings: readings.into_iter().map(reading_to_pb).collect(),
            revision,
            applied_us,
        }),
        Event::Progress { revision } => E::Progress(pb::WatchProgress { revision }),
    };
    pb::WatchResponse { event: Some(event) }
}

pub fn write_outcome_pb(o: WriteOutcome) -> pb::WriteTagResponse {
    pb::WriteTagResponse {
        outcome: o.outcome,
        message: o.message,
        read_back: o.read_back.map(value_to_pb),
        node: o.node,
    }
}

pub fn browse_item_pb(i: bifrost_drivers::BrowseItem) -> pb::BrowseItem {
    pb::BrowseItem {
        address: i.address,
        name: i.name,
        kind: i.kind,
        data_type: i
            .data_type
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        writable: i.writable,
    }
}

pub fn discovered_pb(c: bifrost_drivers::discover::Candidate) -> pb::DiscoveredDevice {
    pb::DiscoveredDevice {
        protocol: c.protocol,
        endpoint: c.endpoint,
        unit_id: c.unit_id,
        vendor: c.vendor,
        product: c.product,
        firmware: c.firmware,
        details: c.details.into_iter().collect(),
    }
}

pub fn digests_pb(d: Digests) -> pb::ReplicaDigestsResponse {
    pb::ReplicaDigestsResponse {
        node_id: d.node_id,
        revision: d.revision,
        oldest_revision: d.oldest_revision,
        applied_index: d.applied_index,
        range_size: d.range_size,
        ranges: d
            .ranges
            .into_iter()
            .map(|r| pb::RangeDigest {
                first: r.first,
                last: r.last,
                count: r.count,
                digest: r.digest.to_vec(),
            })
            .collect(),
    }
}
