//! `cloud-janitor healthcheck`: exits 0 if the daemon answers `/healthz`, for container health
//! checks in an image without a shell or curl.

use std::time::Duration;

use super::{CommandError, Exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
    pub url: String,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let healthy = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(client) => client
            .get(&args.url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success()),
        Err(_) => false,
    };
    Ok(if healthy { Exit::Clean } else { Exit::Unhealthy })
}
