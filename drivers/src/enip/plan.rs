//! Read planning for Logix tags, the counterpart of the Modbus block
//! planner: which Read Tag requests cover a list of tags, and how they are
//! packed into Multiple Service Packets that fit the connection size.
//!
//! * Tags naming consecutive elements of one one-dimensional array
//!   (`Counts[3]`, `Counts[4]`, `Counts[5]`) are read by one Read Tag of
//!   `Counts[3]` with an element count of 3, and the reply is split.
//!   Tags with the same address share one read.
//! * Each read's reply size is estimated from the tags' data types, which
//!   bound the CIP type from above (an `i32` tag is a SINT, INT or DINT: at
//!   most 4 bytes). A read whose reply could exceed the budget is done with
//!   Read Tag Fragmented instead, on its own.
//! * The other reads are packed, in order, into Multiple Service Packets
//!   whose request and estimated reply both fit the budget; a packet of one
//!   read is sent as a plain Read Tag.
//!
//! Pure: it knows addresses, data types and the codec's sizes, not sessions.

use std::collections::HashMap;

use super::address::TagPath;
use super::codec;
use crate::{DataType, TagSpec};

/// Bytes of CIP message a request or a reply may have (the connection
/// size less the 2-byte sequence count of connected messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    pub budget: usize,
}

/// Largest element count of one Read Tag.
const MAX_ELEMENTS: u32 = u16::MAX as u32;

/// Where a tag's value is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Index into [`Plan::reads`].
    pub read: usize,
    /// Element of that read's reply.
    pub element: usize,
}

/// One Read Tag (or Read Tag Fragmented).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// Path of the first element read.
    pub path: TagPath,
    pub epath: Vec<u8>,
    pub elements: u16,
    /// Tags served by this read (indices into the tag list).
    pub tags: Vec<usize>,
    /// Estimated (upper bound) reply size, bytes of CIP message.
    pub reply_size: usize,
    pub fragmented: bool,
}

impl Read {
    pub fn request(&self) -> Vec<u8> {
        codec::read_tag(&self.epath, self.elements)
    }
}

/// How reads are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    /// One Read Tag.
    Single(usize),
    /// A Multiple Service Packet of several Read Tags.
    Multiple(Vec<usize>),
    /// Read Tag Fragmented, repeated until complete.
    Fragmented(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Per tag: its slot, or why it cannot be read (bad address).
    pub slots: Vec<Result<Slot, String>>,
    pub reads: Vec<Read>,
    pub batches: Vec<Batch>,
}

/// Upper bound of the bytes one element of a tag of `data_type` takes.
pub fn element_size_bound(data_type: DataType) -> usize {
    match data_type {
        DataType::Bool => 1,
        DataType::I16 | DataType::U16 => 2,
        DataType::I32 | DataType::U32 | DataType::F32 => 4,
        DataType::I64 | DataType::F64 => 8,
        DataType::String => codec::LOGIX_STRING_SIZE,
    }
}

/// Reply size bound of a Read Tag returning `elements` of `size` bytes
/// (a structure handle is counted: STRING replies carry one).
fn reply_size(elements: usize, size: usize) -> usize {
    codec::READ_REPLY_OVERHEAD + 2 + elements * size
}

/// Plans the reads of `tags` within `limits`.
pub fn plan(tags: &[TagSpec], limits: PlanLimits) -> Plan {
    let mut slots: Vec<Result<Slot, String>> = vec![Err(String::new()); tags.len()];
    let mut reads = Vec::new();
    // Array elements by array, and other tags by address.
    let mut arrays: HashMap<String, Vec<(u32, usize)>> = HashMap::new();
    let mut singles: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let path = match TagPath::parse(&tag.address) {
            Ok(p) => p,
            Err(e) => {
                slots[i] = Err(e);
                continue;
            }
        };
        let groupable = !matches!(tag.data_type, DataType::Bool | DataType::String);
        match path.array_key().filter(|_| groupable) {
            Some((key, index)) => {
                let key = format!("{key}#{}", tag.data_type);
                if !arrays.contains_key(&key) {
                    order.push(key.clone());
                }
                arrays.entry(key).or_default().push((index, i));
            }
            None => {
                let key = path.to_string().to_ascii_lowercase();
                let size = element_size_bound(tag.data_type);
                match singles.get(&key) {
                    Some(&r) => {
                        let read: &mut Read = &mut reads[r];
                        read.tags.push(i);
                        read.reply_size = read.reply_size.max(reply_size(1, size));
                        slots[i] = Ok(Slot {
                            read: r,
                            element: 0,
                        });
                    }
                    None => {
                        singles.insert(key, reads.len());
                        slots[i] = Ok(Slot {
                            read: reads.len(),
                            element: 0,
                        });
                        reads.push(Read {
                            epath: path.epath(),
                            path,
                            elements: 1,
                            tags: vec![i],
                            reply_size: reply_size(1, size),
                            fragmented: false,
                        });
                    }
                }
            }
        }
    }
    for key in order {
        let members = arrays.remove(&key).unwrap_or_default();
        plan_runs(tags, members, &mut reads, &mut slots);
    }
    for r in &mut reads {
        r.fragmented = r.reply_size > limits.budget;
    }
    let batches = pack(&reads, limits);
    Plan {
        slots,
        reads,
        batches,
    }
}

/// Splits one array's elements into runs of consecutive indices, one read
/// each.
fn plan_runs(
    tags: &[TagSpec],
    mut members: Vec<(u32, usize)>,
    reads: &mut Vec<Read>,
    slots: &mut [Result<Slot, String>],
) {
    members.sort();
    let mut start = 0;
    while start < members.len() {
        let first = members[start].0;
        let mut end = start + 1;
        while end < members.len()
            && members[end].0 <= members[end - 1].0 + 1
            && members[end].0 - first < MAX_ELEMENTS
        {
            end += 1;
        }
        let run = &members[start..end];
        let count = run[run.len() - 1].0 - first + 1;
        let size = element_size_bound(tags[run[0].1].data_type);
        let path = TagPath::parse(&tags[run[0].1].address)
            .map(|p| p.with_last_index(first))
            .expect("grouped tags parse");
        let r = reads.len();
        for &(index, i) in run {
            slots[i] = Ok(Slot {
                read: r,
                element: (index - first) as usize,
            });
        }
        reads.push(Read {
            epath: path.epath(),
            path,
            elements: count as u16,
            tags: run.iter().map(|&(_, i)| i).collect(),
            reply_size: reply_size(count as usize, size),
            fragmented: false,
        });
        start = end;
    }
}

/// Packs the unfragmented reads into batches whose request and reply fit.
fn pack(reads: &[Read], limits: PlanLimits) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut req, mut rep) = (0usize, 0usize);
    let close = |current: &mut Vec<usize>, batches: &mut Vec<Batch>| match current.len() {
        0 => {}
        1 => batches.push(Batch::Single(current[0])),
        _ => batches.push(Batch::Multiple(std::mem::take(current))),
    };
    for (i, r) in reads.iter().enumerate() {
        if r.fragmented {
            batches.push(Batch::Fragmented(i));
            continue;
        }
        let (q, p) = (r.request().len(), r.reply_size);
        let n = current.len() + 1;
        let fits = codec::msp_request_overhead(n) + req + q <= limits.budget
            && codec::msp_reply_overhead(n) + rep + p <= limits.budget;
        if !fits && !current.is_empty() {
            close(&mut current, &mut batches);
            current.clear();
            (req, rep) = (0, 0);
        }
        current.push(i);
        req += q;
        rep += p;
    }
    close(&mut current, &mut batches);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(address: &str, data_type: DataType) -> TagSpec {
        crate::TagSpec::new(address, data_type)
    }

    const LIMITS: PlanLimits = PlanLimits { budget: 502 };

    #[test]
    fn consecutive_elements_are_one_read_and_split() {
        let tags = [
            tag("Counts[5]", DataType::I32),
            tag("Counts[3]", DataType::I32),
            tag("Temp", DataType::F32),
            tag("counts[4]", DataType::I32),
            tag("Counts[9]", DataType::I32),
        ];
        let p = plan(&tags, LIMITS);
        assert_eq!(p.reads.len(), 3, "{p:#?}");
        let counts = &p.reads[p.slots[1].as_ref().unwrap().read];
        assert_eq!(counts.path.to_string(), "Counts[3]");
        assert_eq!(counts.elements, 3);
        assert_eq!(p.slots[0].as_ref().unwrap().element, 2);
        assert_eq!(p.slots[3].as_ref().unwrap().element, 1);
        let nine = &p.reads[p.slots[4].as_ref().unwrap().read];
        assert_eq!(
            (nine.path.to_string(), nine.elements),
            ("Counts[9]".into(), 1)
        );
        // All three fit one Multiple Service Packet.
        assert_eq!(p.batches, vec![Batch::Multiple(vec![0, 1, 2])]);
    }

    #[test]
    fn bad_addresses_get_their_own_error_and_one_read_is_single() {
        let tags = [tag("Counts[", DataType::I32), tag("Temp", DataType::F32)];
        let p = plan(&tags, LIMITS);
        assert!(p.slots[0].as_ref().unwrap_err().contains("closing ']'"));
        assert_eq!(p.batches, vec![Batch::Single(0)]);
    }

    #[test]
    fn packets_respect_the_budget_for_request_and_reply() {
        // 60 scalar LREAL-sized tags: each reply is at most 16 bytes, each
        // request 2 + 8 (path "Tag_NN" 8 bytes) + 2.
        let tags: Vec<TagSpec> = (0..60)
            .map(|i| tag(&format!("Tag_{i:02}"), DataType::F64))
            .collect();
        let p = plan(&tags, LIMITS);
        assert!(p.batches.len() > 1, "60 tags do not fit one packet");
        for b in &p.batches {
            let Batch::Multiple(reads) = b else {
                panic!("{b:?}")
            };
            let req: usize = reads.iter().map(|&r| p.reads[r].request().len()).sum();
            let rep: usize = reads.iter().map(|&r| p.reads[r].reply_size).sum();
            let n = reads.len();
            assert!(codec::msp_request_overhead(n) + req <= LIMITS.budget);
            assert!(codec::msp_reply_overhead(n) + rep <= LIMITS.budget);
            // Greedy: the next read would not have fitted.
        }
        let total: usize = p
            .batches
            .iter()
            .map(|b| match b {
                Batch::Multiple(r) => r.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(total, 60);
    }

    #[test]
    fn large_runs_are_fragmented() {
        let tags: Vec<TagSpec> = (0..200)
            .map(|i| tag(&format!("Big[{i}]"), DataType::I32))
            .collect();
        let p = plan(&tags, LIMITS);
        assert_eq!(p.reads.len(), 1);
        assert_eq!(p.reads[0].elements, 200);
        assert!(p.reads[0].fragmented);
        assert_eq!(p.batches, vec![Batch::Fragmented(0)]);
        // 100 DINTs: 6 + 2 + 400 bytes, fits.
        let p = plan(&tags[..100], LIMITS);
        assert_eq!(p.batches, vec![Batch::Single(0)]);
    }

    #[test]
    fn strings_bools_and_multi_dim_elements_are_not_grouped() {
        let tags = [
            tag("Names[0]", DataType::String),
            tag("Names[1]", DataType::String),
            tag("Flags[0]", DataType::Bool),
            tag("Flags[1]", DataType::Bool),
            tag("Grid[0,1]", DataType::I32),
            tag("Grid[0,2]", DataType::I32),
            tag("Temp", DataType::F32),
            tag("TEMP", DataType::F32),
        ];
        let p = plan(&tags, LIMITS);
        assert_eq!(p.reads.len(), 7, "the same address twice is read once");
        assert!(p.reads.iter().all(|r| r.elements == 1));
        assert_eq!(p.slots[6], p.slots[7]);
    }
}
