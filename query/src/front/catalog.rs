//! The catalog of tables: their names and typed columns, and the static
//! types expressions are checked with.

use crate::cell::ColumnType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    Tags,
    Readings,
    Devices,
    Cluster,
    Audit,
}

/// Column positions in the rows each table produces.
pub(crate) mod col {
    pub const R_TAG: usize = 0;
    pub const R_TS: usize = 1;
    pub const R_VALUE: usize = 2;
    pub const R_QUALITY: usize = 3;
    pub const R_REVISION: usize = 5;

    pub const T_NAME: usize = 0;
    pub const T_QUALITY: usize = 10;
    pub const T_TS: usize = 12;
    pub const T_REVISION: usize = 13;
    /// The first column that comes from the current reading.
    pub const T_FIRST_CURRENT: usize = 9;
}

const READINGS: &[(&str, Ty)] = &[
    ("tag", Ty::Text),
    ("ts", Ty::Timestamp),
    ("value", Ty::Any),
    ("quality", Ty::Text),
    ("reason", Ty::Text),
    ("revision", Ty::Int),
    ("id", Ty::Text),
    ("server_ts", Ty::Timestamp),
];
const TAGS: &[(&str, Ty)] = &[
    ("name", Ty::Text),
    ("device", Ty::Text),
    ("address", Ty::Text),
    ("type", Ty::Text),
    ("units", Ty::Text),
    ("description", Ty::Text),
    ("writable", Ty::Bool),
    ("scan_rate_ms", Ty::Int),
    ("config_revision", Ty::Int),
    ("value", Ty::Any),
    ("quality", Ty::Text),
    ("reason", Ty::Text),
    ("ts", Ty::Timestamp),
    ("revision", Ty::Int),
];
const DEVICES: &[(&str, Ty)] = &[
    ("name", Ty::Text),
    ("protocol", Ty::Text),
    ("endpoint", Ty::Text),
    ("unit_id", Ty::Int),
    ("poll_interval_ms", Ty::Int),
    ("timeout_ms", Ty::Int),
    ("retries", Ty::Int),
    ("enabled", Ty::Bool),
    ("labels", Ty::Text),
    ("config_revision", Ty::Int),
    ("owner", Ty::Int),
    ("owner_epoch", Ty::Int),
];
const AUDIT: &[(&str, Ty)] = &[
    ("ts", Ty::Timestamp),
    // `user` is an SQL keyword (the function USER).
    ("username", Ty::Text),
    ("source", Ty::Text),
    ("action", Ty::Text),
    ("target", Ty::Text),
    ("detail", Ty::Text),
    ("outcome", Ty::Text),
    ("revision", Ty::Int),
];
const CLUSTER: &[(&str, Ty)] = &[
    ("node_id", Ty::Int),
    ("address", Ty::Text),
    ("role", Ty::Text),
    ("voter", Ty::Bool),
    ("is_leader", Ty::Bool),
    ("devices", Ty::Int),
];

impl Table {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Tags => "tags",
            Table::Readings => "readings",
            Table::Devices => "devices",
            Table::Cluster => "cluster",
            Table::Audit => "audit",
        }
    }

    pub(crate) fn schema(self) -> &'static [(&'static str, Ty)] {
        match self {
            Table::Tags => TAGS,
            Table::Readings => READINGS,
            Table::Devices => DEVICES,
            Table::Cluster => CLUSTER,
            Table::Audit => AUDIT,
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Table> {
        [
            Table::Tags,
            Table::Readings,
            Table::Devices,
            Table::Cluster,
            Table::Audit,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// `(ts, revision)` columns, by which first/last order rows.
    pub(crate) fn time_columns(self) -> Option<(usize, usize)> {
        match self {
            Table::Readings => Some((col::R_TS, col::R_REVISION)),
            Table::Tags => Some((col::T_TS, col::T_REVISION)),
            _ => None,
        }
    }

    /// The column holding the tag name, which selects the tags to visit.
    pub(crate) fn tag_column(self) -> Option<usize> {
        match self {
            Table::Readings => Some(col::R_TAG),
            Table::Tags => Some(col::T_NAME),
            _ => None,
        }
    }
}

/// Static types. `Interval` values are microseconds at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int,
    Float,
    Text,
    Timestamp,
    Interval,
    Any,
    Null,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "integer",
            Ty::Float => "number",
            Ty::Text => "text",
            Ty::Timestamp => "timestamp",
            Ty::Interval => "interval",
            Ty::Any => "value",
            Ty::Null => "null",
        }
    }
    pub(crate) fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
    pub(crate) fn column_type(self) -> ColumnType {
        match self {
            Ty::Bool => ColumnType::Bool,
            Ty::Int | Ty::Interval => ColumnType::Int,
            Ty::Float => ColumnType::Float,
            Ty::Text => ColumnType::Text,
            Ty::Timestamp => ColumnType::Timestamp,
            Ty::Any | Ty::Null => ColumnType::Any,
        }
    }
}
