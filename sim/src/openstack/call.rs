//! The extractor every authenticated handler starts from: the simulator and the caller its token
//! proved, which [`super::keystone::require_token`] put in the request.

use std::sync::{Arc, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::errors::ApiError;
use super::state::{Cloud, Ctx};
use super::Inner;

/// An authenticated request's simulator and caller.
pub(crate) struct Call {
    pub app: Arc<Inner>,
    pub ctx: Ctx,
}

impl Call {
    /// The cloud, with every asynchronous delete that is due finished first.
    pub fn cloud(&self) -> MutexGuard<'_, Cloud> {
        self.app.cloud()
    }
}

impl FromRequestParts<Arc<Inner>> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<Inner>) -> Result<Self, ApiError> {
        // Every route that extracts a `Call` sits behind `require_token`, which inserts the caller;
        // a route without it is refused as unauthenticated rather than served as nobody.
        let ctx = parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Call {
            app: app.clone(),
            ctx,
        })
    }
}
