//! Request headers. A header's own version depends on its request's API key and version (flexible versions
//! add tagged fields), so both are read first, from the fixed offsets every header version shares, and then
//! the header is decoded with the version they imply.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::limits::KAFKA_FRAME_BYTES_MIN;

/// A request whose header is decoded; its body is not yet.
#[derive(Debug)]
pub struct Framed {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Why a frame's header cannot be read. The connection closes: without a header there is nothing to answer.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {api_key} (version {api_version}, correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, api_version: i16, correlation_id: i32 },
    #[error("bad {api_key:?} v{api_version} request header: {error:#}")]
    Malformed { api_key: ApiKey, api_version: i16, error: anyhow::Error },
}

/// Splits `frame` into its decoded header and its body.
pub fn decode(mut frame: Bytes) -> Result<Framed, HeaderError> {
    if frame.len() < KAFKA_FRAME_BYTES_MIN {
        return Err(HeaderError::TooShort(frame.len()));
    }
    // Offsets 0, 2 and 4 hold the API key, API version and correlation id in every header version.
    let (raw_key, api_version, correlation_id) = {
        let mut fixed = &frame[..KAFKA_FRAME_BYTES_MIN];
        (fixed.get_i16(), fixed.get_i16(), fixed.get_i32())
    };
    let api_key = ApiKey::try_from(raw_key).map_err(|()| HeaderError::UnknownApiKey {
        api_key: raw_key,
        api_version,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|error| HeaderError::Malformed {
        api_key,
        api_version,
        error,
    })?;
    Ok(Framed { api_key, header, body: frame })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    #[test]
    fn headers_of_flexible_and_older_versions_decode() {
        for (version, header_version) in [(0, 1), (3, 2)] {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::ApiVersions as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("test")));
            let mut bytes = BytesMut::new();
            header.encode(&mut bytes, header_version).unwrap();
            bytes.extend_from_slice(b"body");
            let framed = decode(bytes.freeze()).unwrap();
            assert_eq!(
                (framed.api_key, framed.header, framed.body),
                (ApiKey::ApiVersions, header, Bytes::from("body"))
            );
        }
    }

    #[test]
    fn short_unknown_and_malformed_headers_are_errors() {
        assert!(matches!(decode(Bytes::from_static(b"\0\x12\0\0\0\0\0")), Err(HeaderError::TooShort(7))));
        let unknown = decode(Bytes::from_static(b"\x7f\x00\0\x01\0\0\0\x09\0\0"));
        assert!(
            matches!(unknown, Err(HeaderError::UnknownApiKey { api_key: 0x7f00, api_version: 1, correlation_id: 9 })),
            "{unknown:?}"
        );
        // ApiVersions v0 with a client id claiming 100 bytes that are not there.
        let malformed = decode(Bytes::from_static(b"\0\x12\0\0\0\0\0\x01\0\x64ab"));
        assert!(matches!(malformed, Err(HeaderError::Malformed { api_key: ApiKey::ApiVersions, .. })), "{malformed:?}");
    }
}
