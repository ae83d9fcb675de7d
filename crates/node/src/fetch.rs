//! The prompt fetcher: downloads the prompts the engine asks for, off the driver thread,
//! and tells the driver what came back.

use crate::inputs::{FetchJob, Msg};
use crate::node::Node;
use std::sync::Arc;
use tokio::sync::mpsc;

pub async fn run(shared: Arc<Node>, mut rx: mpsc::UnboundedReceiver<FetchJob>) {
    let client = shared.prompt_client();
    while let Some((call_id, op_id, index, uri, resource_id)) = rx.recv().await {
        let shared = shared.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let result = shared
                .load_prompt(&client, &uri, resource_id.as_deref())
                .await;
            if op_id.is_empty() {
                if let Err(e) = result {
                    tracing::warn!(uri, error = %e, "preFetchMedia failed");
                }
                return;
            }
            let _ = shared.driver.send(Msg::Fetched {
                call_id,
                op_id,
                index,
                result,
            });
        });
    }
}
