//! Module identification from the CPU's system status lists (SZL): ID
//! 0x0011 (module identification: order number, hardware and firmware
//! versions) and 0x001C (component identification: module name, serial
//! number). Pure: parses the SZL bytes that [`super::codec::parse_szl_reply`]
//! returns, knows nothing of connections.
//!
//! An SZL starts with its id (2 bytes), index (2), record length LENTHDR
//! (2) and record count N_DR (2), then N_DR records of LENTHDR bytes, each
//! starting with its own 2-byte index.

/// What a CPU says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ModuleIdentity {
    /// Order number (MLFB), e.g. `6ES7 315-2EH14-0AB0`.
    pub order_number: String,
    /// Module name from SZL 0x001C (empty when the CPU does not answer it).
    pub module_name: String,
    /// Serial number from SZL 0x001C (empty when not available).
    pub serial: String,
    /// Firmware version, `V3.2.6`.
    pub firmware: String,
    /// Hardware product version (empty when not given).
    pub hardware: String,
}

struct Szl<'a> {
    /// (record index, record bytes after the index)
    records: Vec<(u16, &'a [u8])>,
}

/// Splits an SZL into records. A LENTHDR of 0 (python-snap7's 0x001C) is
/// read as the standard record length `default_len`; records whose index is
/// 0 take their position (1-based) as index.
fn records(body: &[u8], default_len: usize) -> Result<Szl<'_>, String> {
    if body.len() < 8 {
        return Err(format!("SZL of {} bytes has no header", body.len()));
    }
    let mut len = u16::from_be_bytes([body[4], body[5]]) as usize;
    let mut count = u16::from_be_bytes([body[6], body[7]]) as usize;
    if len == 0 {
        len = default_len;
        count = (body.len() - 8) / len;
    }
    if len < 2 {
        return Err(format!("SZL record length {len} is too short"));
    }
    let records = body[8..]
        .chunks_exact(len)
        .take(count)
        .enumerate()
        .map(|(i, r)| {
            let index = u16::from_be_bytes([r[0], r[1]]);
            (if index == 0 { i as u16 + 1 } else { index }, &r[2..])
        })
        .collect();
    Ok(Szl { records })
}

impl Szl<'_> {
    fn get(&self, index: u16) -> Option<&[u8]> {
        self.records
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, r)| *r)
    }
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

/// Fills order number, firmware and hardware from SZL 0x0011. Record
/// layout: index, MLFB (20 chars), BGTyp (2), Ausbg (2), Ausbe (2). Index 1
/// is the module, 6 its hardware (Ausbg = version), 7 its firmware (Ausbg
/// `'V'` and major, Ausbe minor and patch). Without a record 7 the last
/// three bytes of the last record are the version, as snap7 reads them.
pub fn parse_module_identification(body: &[u8], id: &mut ModuleIdentity) -> Result<(), String> {
    let szl = records(body, 28)?;
    let module = szl.get(1).or(szl.records.first().map(|(_, r)| *r));
    let module = module.ok_or("SZL 0x0011 has no records")?;
    id.order_number = text(&module[..module.len().min(20)]);
    let version_of = |r: &[u8]| -> Option<String> {
        let n = r.len();
        (n >= 3).then(|| format!("V{}.{}.{}", r[n - 3], r[n - 2], r[n - 1]))
    };
    let last = szl.records.last().map(|(_, r)| *r);
    id.firmware = szl.get(7).or(last).and_then(version_of).unwrap_or_default();
    if let Some(hw) = szl.get(6).filter(|r| r.len() >= 24) {
        id.hardware = u16::from_be_bytes([hw[22], hw[23]]).to_string();
    }
    Ok(())
}

/// Fills module name (record 2) and serial number (record 5) from SZL
/// 0x001C (records: index and 32 bytes of text).
pub fn parse_component_identification(body: &[u8], id: &mut ModuleIdentity) -> Result<(), String> {
    let szl = records(body, 34)?;
    id.module_name = szl.get(2).map(text).unwrap_or_default();
    id.serial = szl.get(5).map(text).unwrap_or_default();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u16, mlfb: &str, tail: [u8; 6]) -> Vec<u8> {
        let mut r = index.to_be_bytes().to_vec();
        r.extend_from_slice(format!("{mlfb:<20}").as_bytes());
        r.extend_from_slice(&tail);
        r
    }

    #[test]
    fn szl_0011_of_a_cpu_315() {
        // Built after the layout in Siemens' SZL reference (and snap7's
        // parser), not captured from hardware: SZL id 0011, index 0000,
        // LENTHDR 28 (0x1C), N_DR 3, then three records.
        let mut body = vec![0x00, 0x11, 0x00, 0x00, 0x00, 0x1C, 0x00, 0x03];
        // Index 1, the module: MLFB, BGTyp 0x00C0, Ausbg 4, Ausbe 1.
        body.extend(record(
            1,
            "6ES7 315-2EH14-0AB0",
            [0x00, 0xC0, 0x00, 0x04, 0x00, 0x01],
        ));
        // Index 6, basic hardware: hardware version 4 in Ausbg.
        body.extend(record(
            6,
            "6ES7 315-2EH14-0AB0",
            [0x00, 0xC0, 0x00, 0x04, 0x00, 0x01],
        ));
        // Index 7, basic firmware: MLFB blank, Ausbg 'V' 3, Ausbe 2 6: V3.2.6.
        body.extend(record(7, "", [0x00, 0xC0, b'V', 3, 2, 6]));
        let mut id = ModuleIdentity::default();
        parse_module_identification(&body, &mut id).unwrap();
        assert_eq!(id.order_number, "6ES7 315-2EH14-0AB0");
        assert_eq!(id.firmware, "V3.2.6");
        assert_eq!(id.hardware, "4");
    }

    #[test]
    fn szl_001c_with_a_zero_header_reads_records_by_position() {
        // python-snap7's layout: LENTHDR and N_DR 0, indices 0, text at
        // record starts 8 + 34k + 2.
        let mut body = vec![0x00, 0x1C, 0x00, 0x00, 0, 0, 0, 0];
        for name in [
            "SNAP7-SERVER",
            "CPU 315-2 PN/DP",
            "",
            "Original Siemens",
            "S C-1234",
            "x",
        ] {
            let mut r = vec![0u8; 34];
            r[2..2 + name.len()].copy_from_slice(name.as_bytes());
            body.extend(r);
        }
        let mut id = ModuleIdentity::default();
        parse_component_identification(&body, &mut id).unwrap();
        assert_eq!(id.module_name, "CPU 315-2 PN/DP");
        assert_eq!(id.serial, "S C-1234");
    }

    #[test]
    fn short_or_odd_szls_are_errors_not_panics() {
        let mut id = ModuleIdentity::default();
        assert!(parse_module_identification(&[0, 0x11], &mut id).is_err());
        assert!(parse_module_identification(&[0, 0x11, 0, 0, 0, 1, 0, 5, 9], &mut id).is_err());
        assert!(parse_module_identification(&[0, 0x11, 0, 0, 0, 28, 0, 3], &mut id).is_err());
        for n in 0..60 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse_module_identification(&junk, &mut id);
            let _ = parse_component_identification(&junk, &mut id);
        }
    }
}
