//! Cinder: the 400 for volumes in use or with snapshots, asynchronous deletes, metadata filters.

use serde_json::json;

use crate::client;

const V: &str = "/volume/v3/{project}";
const NOT_DELETABLE: &str = "Invalid volume: Volume status must be available or error or error_restoring or \
    error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or \
    be disassociated from snapshots after volume transfer.";

#[tokio::test]
async fn attached_volumes_and_volumes_with_snapshots_refuse_delete() {
    let (_, client) = client::demo().await;
    let volume = client
        .create(&format!("{V}/volumes"), "volume", json!({"size": 1, "name": "v"}))
        .await;
    let server = client
        .create(
            "/compute/v2.1/servers",
            "server",
            json!({"name": "vm", "imageRef": "i", "flavorRef": "1", "networks": "none"}),
        )
        .await;
    let attach = json!({"volumeAttachment": {"volumeId": volume}});
    assert_eq!(
        client
            .post(
                &format!("/compute/v2.1/servers/{server}/os-volume_attachments"),
                attach
            )
            .await
            .0,
        200
    );
    let (_, detail) = client.get(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(detail["volume"]["status"], "in-use");
    assert_eq!(detail["volume"]["attachments"][0]["server_id"], json!(server));
    assert!(detail["volume"]["attachments"][0]["attachment_id"].is_string());

    let (status, body) = client.delete(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"badRequest": {"code": 400, "message": NOT_DELETABLE}})
    );
    let (status, _) = client
        .post(
            &format!("{V}/snapshots"),
            json!({"snapshot": {"volume_id": volume}}),
        )
        .await;
    assert_eq!(status, 400, "an in-use volume needs force to be snapshotted");

    let detach = format!("/compute/v2.1/servers/{server}/os-volume_attachments/{volume}");
    assert_eq!(client.delete(&detach).await.0, 202);
    let snapshot = client
        .create(
            &format!("{V}/snapshots"),
            "snapshot",
            json!({"volume_id": volume, "name": "s"}),
        )
        .await;
    let (status, body) = client.delete(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(
        (status, body["badRequest"]["message"].as_str()),
        (400, Some(NOT_DELETABLE))
    );

    assert_eq!(client.delete(&format!("{V}/snapshots/{snapshot}")).await.0, 202);
    let (_, deleting) = client.get(&format!("{V}/snapshots/{snapshot}")).await;
    assert_eq!(deleting["snapshot"]["status"], "deleting");
    client
        .get_after_deletes(&format!("{V}/snapshots/{snapshot}"))
        .await;
    assert_eq!(client.delete(&format!("{V}/volumes/{volume}")).await.0, 202);
    let (_, deleting) = client.get(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(deleting["volume"]["status"], "deleting");
    let gone = client.get_after_deletes(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(
        gone["itemNotFound"]["message"],
        format!("Volume {volume} could not be found.")
    );
}

#[tokio::test]
async fn a_failing_delete_ends_in_error_deleting() {
    let (sim, client) = client::demo().await;
    let volume = sim.create_volume("v", 1, &[]).unwrap();
    assert!(sim.fail_volume_delete(&volume));
    assert_eq!(client.delete(&format!("{V}/volumes/{volume}")).await.0, 202);
    assert_eq!(sim.volume_status(&volume).as_deref(), Some("deleting"));
    sim.advance_clock(client::DELETE_DELAY);
    assert_eq!(sim.volume_status(&volume).as_deref(), Some("error_deleting"));
    assert_eq!(client.delete(&format!("{V}/volumes/{volume}")).await.0, 400);
}

#[tokio::test]
async fn metadata_filters_and_pages() {
    let (sim, client) = client::demo().await;
    let mut tagged = Vec::new();
    for i in 0..3 {
        tagged.push(
            sim.create_volume(&format!("ci-{i}"), 1, &[("ci-job", "true"), ("job", "job-1")])
                .unwrap(),
        );
    }
    let untagged = sim.create_volume("keep", 1, &[]).unwrap();
    let (_, list) = client
        .get(&format!(
            "{V}/volumes/detail?metadata=%7B%22ci-job%22%3A%22true%22%7D"
        ))
        .await;
    let ids = client::sorted(client::strings(&list, "volumes", "id"));
    tagged.sort();
    assert_eq!(ids, tagged);
    let (_, python_style) = client
        .get(&format!("{V}/volumes/detail?metadata={{'job':'job-1'}}"))
        .await;
    assert_eq!(client::items(&python_style, "volumes").len(), 3);
    assert!(!ids.contains(&untagged));

    let (_, first) = client.get(&format!("{V}/volumes/detail?limit=3")).await;
    assert_eq!(client::items(&first, "volumes").len(), 3);
    let next = first["volumes_links"][0]["href"]
        .as_str()
        .unwrap()
        .strip_prefix(&sim.url())
        .unwrap()
        .to_string();
    let (_, second) = client.get(&next).await;
    assert_eq!(client::items(&second, "volumes").len(), 1);
    assert!(second.get("volumes_links").is_none());
    let (status, _) = client.get("/volume/v3/someone-else/volumes/detail").await;
    assert_eq!(status, 400, "the URL's project must be the token's");
}
