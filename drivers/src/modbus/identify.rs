//! Is there a Modbus TCP device at an address, and what is it? For
//! discovery: read-only requests only. First Read Device Identification
//! (function 43, MEI type 14, basic objects: vendor, product code,
//! revision); a device that does not support it is still found by reading
//! one holding register (an exception answer counts: something that speaks
//! Modbus is there).
//!
//! Each request is bounded by the timeout; the connection is closed after.
//! No state, no retries: the caller paces and repeats probes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_modbus::client::{tcp, Reader};
use tokio_modbus::prelude::{ReadCode, Slave};

use crate::{Error, Result};

/// What a Modbus device said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModbusIdentity {
    pub vendor: String,
    pub product: String,
    pub revision: String,
    /// How it was found: `device identification`, or `register read`
    /// (with what the read answered) when identification is not supported.
    pub found_by: String,
}

/// Object ids of the basic device identification.
const VENDOR_NAME: u8 = 0x00;
const PRODUCT_CODE: u8 = 0x01;
const REVISION: u8 = 0x02;

/// Probes unit `unit` at `addr`. `Ok(None)` when something answered the
/// TCP connection but no Modbus answer came; an error when nothing
/// listens or the connection timed out.
pub async fn identify(
    addr: SocketAddr,
    unit: u8,
    timeout: Duration,
) -> Result<Option<ModbusIdentity>> {
    let connect = tcp::connect_slave(addr, Slave(unit));
    let mut ctx = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::Timeout(format!("connecting to {addr}")))?
        .map_err(|e| Error::Io(format!("connecting to {addr}: {e}")))?;
    let ident =
        tokio::time::timeout(timeout, ctx.read_device_identification(ReadCode::Basic, 0)).await;
    if let Ok(Ok(Ok(resp))) = ident {
        let object = |id: u8| {
            resp.device_id_objects
                .iter()
                .find(|o| o.id == id)
                .map(|o| String::from_utf8_lossy(&o.value).trim().to_string())
                .unwrap_or_default()
        };
        return Ok(Some(ModbusIdentity {
            vendor: object(VENDOR_NAME),
            product: object(PRODUCT_CODE),
            revision: object(REVISION),
            found_by: "device identification".into(),
        }));
    }
    let why = match ident {
        Ok(Ok(Err(exception))) => format!("identification refused ({exception})"),
        Ok(Err(e)) => format!("identification failed ({e})"),
        Err(_) => "identification timed out".into(),
        Ok(Ok(Ok(_))) => unreachable!("handled above"),
    };
    // A timed-out or failed request may leave the connection out of step:
    // the register read gets a fresh one.
    drop(ctx);
    let mut ctx = match tokio::time::timeout(timeout, tcp::connect_slave(addr, Slave(unit))).await {
        Ok(Ok(ctx)) => ctx,
        _ => return Ok(None),
    };
    let answer = match tokio::time::timeout(timeout, ctx.read_holding_registers(0, 1)).await {
        Ok(Ok(Ok(_))) => "holding register 0 read".to_string(),
        Ok(Ok(Err(exception))) => format!("holding register 0 answered {exception}"),
        _ => return Ok(None),
    };
    Ok(Some(ModbusIdentity {
        found_by: format!("register read: {answer}; {why}"),
        ..Default::default()
    }))
}
