//! What clients that clean a whole project ask besides the core services (`openstack project
//! cleanup` walks every service): Neutron's service providers, Cinder backups, Keystone projects by
//! name and id, and a minimal Glance v2 in the catalog.

use serde_json::json;

use crate::client::{self, Client};

const V: &str = "/volume/v3/{project}";

#[tokio::test]
async fn service_providers_answer_an_empty_list_filtered_or_not() {
    let (_, client) = client::demo().await;
    for path in [
        "/network/v2.0/service-providers",
        "/network/v2.0/service-providers?service_type=VPN",
        "/network/v2.0/service-providers?service_type=LOADBALANCERV2&fields=name",
    ] {
        assert_eq!(
            client.get(path).await,
            (200, json!({"service_providers": []})),
            "{path}"
        );
    }
}

#[tokio::test]
async fn backups_are_listed_created_shown_and_deleted_asynchronously_and_outlive_their_volume() {
    let (_, client) = client::demo().await;
    let volume = client
        .create(&format!("{V}/volumes"), "volume", json!({"size": 2, "name": "v"}))
        .await;
    let backup = client
        .create(
            &format!("{V}/backups"),
            "backup",
            json!({"volume_id": volume, "name": "b"}),
        )
        .await;
    let (status, brief) = client.get(&format!("{V}/backups")).await;
    assert_eq!(
        (status, brief["backups"][0]["id"].as_str()),
        (200, Some(backup.as_str()))
    );
    assert!(
        brief["backups"][0].get("status").is_none(),
        "the brief list has no status"
    );
    let (_, detail) = client
        .get(&format!("{V}/backups/detail?volume_id={volume}"))
        .await;
    assert_eq!(detail["backups"][0]["status"], "available");
    assert_eq!(detail["backups"][0]["size"], 2);
    // The volume goes; its backup stays.
    assert_eq!(client.delete(&format!("{V}/volumes/{volume}")).await.0, 202);
    client.get_after_deletes(&format!("{V}/volumes/{volume}")).await;
    assert_eq!(client.get(&format!("{V}/backups/{backup}")).await.0, 200);
    assert_eq!(client.delete(&format!("{V}/backups/{backup}")).await.0, 202);
    let (_, deleting) = client.get(&format!("{V}/backups/{backup}")).await;
    assert_eq!(deleting["backup"]["status"], "deleting");
    let gone = client.get_after_deletes(&format!("{V}/backups/{backup}")).await;
    assert_eq!(
        gone["itemNotFound"]["message"],
        format!("Backup {backup} could not be found.")
    );
    let (status, _) = client
        .post(&format!("{V}/backups"), json!({"backup": {"volume_id": "nope"}}))
        .await;
    assert_eq!(status, 404, "a backup of a volume that is not there");
}

#[tokio::test]
async fn projects_are_found_by_name_and_by_id_and_members_see_only_their_own() {
    let sim = client::start().await;
    let demo = Client::demo(&sim).await;
    let (status, by_name) = demo.get("/identity/v3/projects?name=demo").await;
    assert_eq!(status, 200);
    assert_eq!(
        by_name["projects"][0]["id"].as_str(),
        Some(demo.project_id.as_str())
    );
    assert_eq!(by_name["projects"].as_array().map(Vec::len), Some(1));
    let (_, others) = demo.get("/identity/v3/projects?name=admin").await;
    assert_eq!(
        others["projects"],
        json!([]),
        "a member does not see another project"
    );
    let (status, by_id) = demo
        .get(&format!("/identity/v3/projects/{}", demo.project_id))
        .await;
    assert_eq!((status, by_id["project"]["name"].as_str()), (200, Some("demo")));
    assert_eq!(demo.get("/identity/v3/projects/no-such-project").await.0, 404);
    let (_, scopes) = demo.get("/identity/v3/auth/projects").await;
    assert_eq!(scopes["projects"][0]["name"], "demo");
    let admin = Client::admin(&sim).await;
    let (_, all) = admin.get("/identity/v3/projects").await;
    assert_eq!(all["projects"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        admin
            .get(&format!("/identity/v3/projects/{}", demo.project_id))
            .await
            .0,
        200
    );
    assert_eq!(
        demo.get(&format!("/identity/v3/projects/{}", admin.project_id))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn glance_is_in_the_catalog_and_images_are_created_listed_tagged_and_deleted() {
    let (sim, client) = client::demo().await;
    let (_, token) = {
        let (status, _, body) =
            client::issue_token(&sim, &client::password_auth("demo", "demopass", "demo")).await;
        (status, body)
    };
    let catalog = token["token"]["catalog"].as_array().unwrap();
    let image = catalog
        .iter()
        .find(|s| s["type"] == "image")
        .expect("an image service");
    assert_eq!(image["endpoints"][0]["url"], format!("{}/image", sim.url()));
    assert_eq!(client.get("/image").await.0, 300);

    let (status, created) = client
        .post(
            "/image/v2/images",
            json!({"name": "ci-img", "disk_format": "qcow2", "container_format": "bare", "tags": ["ci-job"]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (created["status"].as_str(), created["visibility"].as_str()),
        (Some("queued"), Some("shared"))
    );
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        client
            .put(&format!("/image/v2/images/{id}/tags/job-1"), json!(null))
            .await
            .0,
        204
    );
    let (_, listed) = client
        .get(&format!(
            "/image/v2/images?owner={}&tag=ci-job&tag=job-1",
            client.project_id
        ))
        .await;
    assert_eq!(listed["images"][0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(listed["images"][0]["tags"], json!(["ci-job", "job-1"]));
    let (_, none) = client.get("/image/v2/images?tag=other").await;
    assert_eq!(none["images"], json!([]));
    assert_eq!(
        client
            .delete(&format!("/image/v2/images/{id}/tags/job-1"))
            .await
            .0,
        204
    );
    assert_eq!(
        client
            .delete(&format!("/image/v2/images/{id}/tags/job-1"))
            .await
            .0,
        404
    );
    let (_, protected) = client
        .post("/image/v2/images", json!({"name": "keep", "protected": true}))
        .await;
    let protected = protected["id"].as_str().unwrap().to_string();
    assert_eq!(
        client.delete(&format!("/image/v2/images/{protected}")).await.0,
        403
    );
    assert_eq!(client.delete(&format!("/image/v2/images/{id}")).await.0, 204);
    assert_eq!(client.get(&format!("/image/v2/images/{id}")).await.0, 404);
    assert_eq!(sim.count("image"), 1);
    let (status, _) = client
        .post("/image/v2/images", json!({"name": "p", "visibility": "public"}))
        .await;
    assert_eq!(status, 403, "only admins publish");
}
