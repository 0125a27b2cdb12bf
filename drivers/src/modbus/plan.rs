//! Block-read planning: coalesce one device's tags into as few read requests
//! as possible.
//!
//! Every request costs a round trip (on a 19200-baud RTU line, tens of
//! milliseconds), so reading fifty neighbouring registers in one request beats
//! fifty requests. But devices differ: the protocol caps one read at 125
//! registers or 2000 bits and many devices accept less, and a device whose map
//! has holes answers a read that spans a hole with exception 2 (illegal data
//! address) for the whole block. Hence two per-device limits:
//!
//! * `max_registers` / `max_bits`: the largest request (registers for holding
//!   and input registers, bits for coils and discrete inputs);
//! * `max_gap`: the most unused registers (or bits) a request may read to join
//!   two tags. 0 joins only tags that touch or overlap; use it for devices
//!   with holes in their map.
//!
//! Tags are grouped per table and sorted by start; a request grows while the
//! next tag starts within `max_gap` of its end and the grown request stays
//! within the size limit. Taking the earliest tag that does not fit as the
//! start of the next request is optimal for this one-dimensional problem (a
//! later tag is always at least as easy to fit into the next request). A tag
//! is never split across requests; a tag larger than the limit gets an error
//! instead of a place.

use super::address::{ParsedAddress, Table};

/// Protocol maximum registers per read (function codes 3 and 4).
pub const MAX_REGISTERS: u16 = 125;
/// Protocol maximum bits per read (function codes 1 and 2).
pub const MAX_BITS: u16 = 2000;

/// Per-device limits for planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Largest register read, 1-125.
    pub max_registers: u16,
    /// Largest coil/discrete-input read, 1-2000.
    pub max_bits: u16,
    /// Most unused registers (bits, in bit tables) read to join two tags.
    pub max_gap: u16,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            max_registers: MAX_REGISTERS,
            max_bits: MAX_BITS,
            max_gap: 10,
        }
    }
}

impl PlanLimits {
    fn max_for(&self, table: Table) -> u32 {
        if table.is_bits() {
            self.max_bits as u32
        } else {
            self.max_registers as u32
        }
    }
}

/// One read request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices (into the planned tag list) of the tags this request serves.
    pub tags: Vec<usize>,
}

/// Where a tag's registers (or bit) are in the responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagSlot {
    /// Index into [`Plan::requests`].
    pub request: usize,
    /// Index of the tag's first register (or bit) in that response.
    pub index: u16,
    /// Registers (or bits) the tag spans.
    pub count: u16,
    /// Bit within the register, for bools in registers.
    pub bit: Option<u8>,
}

/// The requests for one device, and per tag where to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub requests: Vec<ReadRequest>,
    /// One entry per input tag, in input order: its slot, or why it has none.
    pub slots: Vec<Result<TagSlot, String>>,
}

/// Plans the reads for `tags` (already parsed; an `Err` passes through to
/// its slot). Requests come out ordered by table, then start.
pub fn plan(tags: &[Result<ParsedAddress, String>], limits: &PlanLimits) -> Plan {
    let mut slots: Vec<Result<TagSlot, String>> = tags
        .iter()
        .map(|t| match t {
            Ok(_) => Err(String::new()), // placeholder, every Ok tag is placed below
            Err(e) => Err(e.clone()),
        })
        .collect();
    let mut order: Vec<(Table, u32, u32, usize)> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        let Ok(a) = t else { continue };
        let max = limits.max_for(a.table);
        if a.count as u32 > max {
            let unit = if a.table.is_bits() {
                "bits"
            } else {
                "registers"
            };
            slots[i] = Err(format!(
                "tag at {a} spans {} {unit}, more than this device's maximum request of {max}",
                a.count
            ));
            continue;
        }
        order.push((a.table, a.offset as u32, a.end(), i));
    }
    order.sort_unstable();

    let mut requests: Vec<ReadRequest> = Vec::new();
    // (table, start, end) of the request being grown.
    let mut cur: Option<(Table, u32, u32)> = None;
    for (table, start, end, i) in order {
        let max = limits.max_for(table);
        let fits = match cur {
            Some((t, s, e)) => {
                t == table
                    && start.saturating_sub(e) <= limits.max_gap as u32
                    && end.max(e) - s <= max
            }
            None => false,
        };
        if fits {
            let (_, s, e) = cur.as_mut().expect("fits implies a current request");
            *e = (*e).max(end);
            let r = requests.last_mut().expect("current request exists");
            r.count = (*e - *s) as u16;
            r.tags.push(i);
        } else {
            cur = Some((table, start, end));
            requests.push(ReadRequest {
                table,
                start: start as u16,
                count: (end - start) as u16,
                tags: vec![i],
            });
        }
    }
    for (ri, r) in requests.iter().enumerate() {
        for &i in &r.tags {
            let a = tags[i].as_ref().expect("only Ok tags are placed");
            slots[i] = Ok(TagSlot {
                request: ri,
                index: a.offset - r.start,
                count: a.count,
                bit: a.bit,
            });
        }
    }
    Plan { requests, slots }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::address::validate;
    use crate::DataType::{self, Bool, F32, F64, U16, U32};

    fn addrs(list: &[(&str, DataType)]) -> Vec<Result<ParsedAddress, String>> {
        list.iter().map(|(a, t)| validate(a, *t, 4)).collect()
    }

    fn limits(max_registers: u16, max_gap: u16) -> PlanLimits {
        PlanLimits {
            max_registers,
            max_bits: 2000,
            max_gap,
        }
    }

    fn spans(p: &Plan) -> Vec<(Table, u16, u16)> {
        p.requests
            .iter()
            .map(|r| (r.table, r.start, r.count))
            .collect()
    }

    #[test]
    fn contiguous_tags_become_one_request() {
        let tags = addrs(&[("hr:0", U32), ("hr:2", F32), ("hr:4", U16), ("hr:5", U16)]);
        let p = plan(&tags, &limits(125, 0));
        assert_eq!(spans(&p), vec![(Table::HoldingRegister, 0, 6)]);
        let idx: Vec<u16> = p.slots.iter().map(|s| s.as_ref().unwrap().index).collect();
        assert_eq!(idx, vec![0, 2, 4, 5]);
    }

    #[test]
    fn gap_up_to_max_gap_is_read_through_and_beyond_it_splits() {
        // hr:0 u16 ends at 1; hr:4 leaves a gap of 3.
        let tags = addrs(&[("hr:0", U16), ("hr:4", U16)]);
        assert_eq!(
            spans(&plan(&tags, &limits(125, 3))),
            vec![(Table::HoldingRegister, 0, 5)]
        );
        assert_eq!(
            spans(&plan(&tags, &limits(125, 2))),
            vec![
                (Table::HoldingRegister, 0, 1),
                (Table::HoldingRegister, 4, 1)
            ]
        );
    }

    #[test]
    fn zero_gap_joins_only_touching_or_overlapping_tags() {
        let tags = addrs(&[
            ("hr:0", U16),
            ("hr:1", U16),
            ("hr:1.3", Bool),
            ("hr:3", U16),
        ]);
        assert_eq!(
            spans(&plan(&tags, &limits(125, 0))),
            vec![
                (Table::HoldingRegister, 0, 2),
                (Table::HoldingRegister, 3, 1)
            ]
        );
    }

    #[test]
    fn request_size_is_capped_exactly_at_the_maximum() {
        // 10 u16 tags at 0..10: max 10 is one request, max 9 is two.
        let list: Vec<String> = (0..10).map(|i| format!("hr:{i}")).collect();
        let tags: Vec<_> = list.iter().map(|a| validate(a, U16, 0)).collect();
        assert_eq!(
            spans(&plan(&tags, &limits(10, 0))),
            vec![(Table::HoldingRegister, 0, 10)]
        );
        assert_eq!(
            spans(&plan(&tags, &limits(9, 0))),
            vec![
                (Table::HoldingRegister, 0, 9),
                (Table::HoldingRegister, 9, 1)
            ]
        );
    }

    #[test]
    fn a_tag_is_never_split_across_requests() {
        // f64 at 6..10 would cross the 8-register boundary: it moves whole.
        let tags = addrs(&[("hr:0", U16), ("hr:6", F64)]);
        let p = plan(&tags, &limits(8, 10));
        assert_eq!(
            spans(&p),
            vec![
                (Table::HoldingRegister, 0, 1),
                (Table::HoldingRegister, 6, 4)
            ]
        );
        assert_eq!(
            p.slots[1],
            Ok(TagSlot {
                request: 1,
                index: 0,
                count: 4,
                bit: None
            })
        );
    }

    #[test]
    fn a_tag_larger_than_the_maximum_gets_an_error_not_a_request() {
        let tags = vec![
            validate("hr:0", DataType::String, 20),
            validate("hr:30", U16, 0),
        ];
        let p = plan(&tags, &limits(16, 0));
        assert!(p.slots[0]
            .as_ref()
            .unwrap_err()
            .contains("more than this device's maximum request of 16"));
        assert_eq!(spans(&p), vec![(Table::HoldingRegister, 30, 1)]);
        assert_eq!(p.slots[1].as_ref().unwrap().request, 0);
    }

    #[test]
    fn tables_are_planned_separately() {
        let tags = addrs(&[
            ("hr:0", U16),
            ("ir:0", U16),
            ("coil:0", Bool),
            ("di:1", Bool),
            ("ir:1", U16),
            ("coil:7", Bool),
        ]);
        let p = plan(&tags, &limits(125, 10));
        assert_eq!(
            spans(&p),
            vec![
                (Table::Coil, 0, 8),
                (Table::DiscreteInput, 1, 1),
                (Table::InputRegister, 0, 2),
                (Table::HoldingRegister, 0, 1),
            ]
        );
        assert_eq!(
            p.slots[5],
            Ok(TagSlot {
                request: 0,
                index: 7,
                count: 1,
                bit: None
            })
        );
    }

    #[test]
    fn bit_tables_use_the_bit_limit() {
        let tags = addrs(&[("coil:0", Bool), ("coil:1999", Bool), ("coil:2000", Bool)]);
        let p = plan(
            &tags,
            &PlanLimits {
                max_registers: 125,
                max_bits: 2000,
                max_gap: 2000,
            },
        );
        assert_eq!(
            spans(&p),
            vec![(Table::Coil, 0, 2000), (Table::Coil, 2000, 1)]
        );
    }

    #[test]
    fn unsorted_and_invalid_inputs_keep_their_positions() {
        let tags = vec![
            validate("hr:10", U16, 0),
            Err("address 'x': bad".to_string()),
            validate("hr:2", U32, 0),
        ];
        let p = plan(&tags, &limits(125, 10));
        assert_eq!(spans(&p), vec![(Table::HoldingRegister, 2, 9)]);
        assert_eq!(p.slots[0].as_ref().unwrap().index, 8);
        assert_eq!(p.slots[1], Err("address 'x': bad".to_string()));
        assert_eq!(p.slots[2].as_ref().unwrap().index, 0);
    }

    #[test]
    fn highest_registers_plan_without_overflow() {
        let tags = addrs(&[("hr:65532", F64), ("hr:65535", U16)]);
        assert_eq!(
            spans(&plan(&tags, &limits(125, 0))),
            vec![(Table::HoldingRegister, 65532, 4)]
        );
    }
}
