//! ApiVersions: the APIs and versions served (see `api`).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::api::SERVED;

pub fn handle(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SERVED
        .iter()
        .map(|(key, _, max, advertised_min)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *advertised_min;
            v.max_version = *max;
            v
        })
        .collect();
    r
}
