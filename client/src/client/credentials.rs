//! The session token a [`Client`](super::Client) sends: one
//! [`Credentials`] per client, shared by its clones, put into every request
//! (unary or streaming, discovery included) by a tonic interceptor on the
//! stub, as `authorization: Bearer TOKEN`.

use std::sync::{Arc, RwLock};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::proto::bifrost_client::BifrostClient;

/// A stub of the public API that carries the client's credentials.
pub(crate) type Stub = BifrostClient<InterceptedService<Channel, Credentials>>;

/// The metadata key of the token.
pub const AUTHORIZATION: &str = "authorization";

/// The current token, if any, shared by a client and its clones and stubs.
#[derive(Clone, Default)]
pub(crate) struct Credentials(Arc<RwLock<Option<Token>>>);

struct Token {
    text: String,
    /// `Bearer TEXT`, marked sensitive; `None` if the text cannot be a
    /// header value (then every call fails, saying so).
    header: Option<AsciiMetadataValue>,
}

impl Credentials {
    pub(crate) fn new(token: Option<String>) -> Credentials {
        let c = Credentials::default();
        c.set(token);
        c
    }

    pub(crate) fn set(&self, token: Option<String>) {
        let token = token.map(|text| {
            let header = format!("Bearer {text}")
                .parse()
                .ok()
                .map(|mut v: AsciiMetadataValue| {
                    v.set_sensitive(true);
                    v
                });
            Token { text, header }
        });
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    pub(crate) fn get(&self) -> Option<String> {
        let token = self.0.read().unwrap_or_else(|p| p.into_inner());
        token.as_ref().map(|t| t.text.clone())
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = self.0.read().unwrap_or_else(|p| p.into_inner());
        match token.as_ref().map(|t| &t.header) {
            None => {}
            Some(Some(header)) => {
                request.metadata_mut().insert(AUTHORIZATION, header.clone());
            }
            Some(None) => {
                return Err(Status::unauthenticated(
                    "the session token holds characters a header cannot carry",
                ))
            }
        }
        Ok(request)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.read().map(|t| t.is_some()).unwrap_or(false);
        f.write_str(if set { "Some(<token>)" } else { "None" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(c: &Credentials) -> Result<Option<String>, Status> {
        let r = c.clone().call(Request::new(()))?;
        Ok(r.metadata()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string()))
    }

    #[test]
    fn the_token_is_sent_as_a_bearer_header_and_shared_by_clones() {
        let c = Credentials::new(None);
        assert_eq!(header_of(&c).unwrap(), None);
        let clone = c.clone();
        c.set(Some("abc".into()));
        assert_eq!(header_of(&clone).unwrap().as_deref(), Some("Bearer abc"));
        assert_eq!(clone.get().as_deref(), Some("abc"));
        clone.set(None);
        assert_eq!(header_of(&c).unwrap(), None);
    }

    #[test]
    fn a_token_that_cannot_be_a_header_fails_the_call_and_is_not_shown() {
        let c = Credentials::new(Some("bad\ntoken".into()));
        let e = header_of(&c).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(format!("{c:?}"), "Some(<token>)");
    }
}
