//! The behaviour every `Store` backend must show, as one async suite that panics on the first
//! deviation. Backend tests (directory here, S3 in the tests crate) call `run_all`.

use super::{Key, PutMode, Store, StoreError};
use bytes::Bytes;
use std::sync::Arc;

fn key(text: &str) -> Key {
    Key::parse(text).expect("conformance keys are valid")
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    get_of_a_missing_key_is_not_found(&*store).await;
    overwrite_replaces_and_get_returns_it(&*store).await;
    create_if_absent_fails_on_an_existing_key_and_keeps_it(&*store).await;
    list_returns_exactly_the_keys_under_a_prefix(&*store).await;
    delete_removes_and_then_reports_not_found(&*store).await;
    concurrent_creators_of_one_key_have_exactly_one_winner(store, 8).await;
}

async fn get_of_a_missing_key_is_not_found(store: &dyn Store) {
    let result = store.get(&key("conformance/missing.json")).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
}

async fn overwrite_replaces_and_get_returns_it(store: &dyn Store) {
    let k = key("conformance/overwrite/a.json");
    for body in ["first", "second, longer than the first"] {
        store
            .put(&k, Bytes::from(body), PutMode::Overwrite)
            .await
            .expect("overwrite");
        assert_eq!(store.get(&k).await.expect("get"), Bytes::from(body));
    }
}

async fn create_if_absent_fails_on_an_existing_key_and_keeps_it(store: &dyn Store) {
    let k = key("conformance/create/00000000000000000001.json");
    store
        .put(&k, Bytes::from("winner"), PutMode::Create)
        .await
        .expect("first create");
    let second = store.put(&k, Bytes::from("loser"), PutMode::Create).await;
    assert!(
        matches!(second, Err(StoreError::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(store.get(&k).await.expect("get"), Bytes::from("winner"));
}

async fn list_returns_exactly_the_keys_under_a_prefix(store: &dyn Store) {
    for name in ["b.json", "a.json", "c.json"] {
        store
            .put(
                &key(&format!("conformance/list/{name}")),
                Bytes::from("{}"),
                PutMode::Overwrite,
            )
            .await
            .expect("put");
    }
    store
        .put(
            &key("conformance/listing-neighbour.json"),
            Bytes::from("{}"),
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    let listed: Vec<String> = store
        .list("conformance/list/")
        .await
        .expect("list")
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        listed,
        [
            "conformance/list/a.json",
            "conformance/list/b.json",
            "conformance/list/c.json"
        ]
    );
    assert!(
        store
            .list("conformance/empty/")
            .await
            .expect("list")
            .is_empty()
    );
}

async fn delete_removes_and_then_reports_not_found(store: &dyn Store) {
    let k = key("conformance/delete/a.json");
    store
        .put(&k, Bytes::from("x"), PutMode::Overwrite)
        .await
        .expect("put");
    store.delete(&k).await.expect("delete");
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        !store
            .list("conformance/delete/")
            .await
            .expect("list")
            .contains(&k)
    );
}

async fn concurrent_creators_of_one_key_have_exactly_one_winner(
    store: Arc<dyn Store>,
    writers: usize,
) {
    for round in 0..5 {
        let k = key(&format!("conformance/race/{round:020}.json"));
        let barrier = Arc::new(tokio::sync::Barrier::new(writers));
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let (store, k, barrier) = (Arc::clone(&store), k.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let body = Bytes::from(format!("writer-{writer}"));
                    (writer, store.put(&k, body, PutMode::Create).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (writer, result) = task.await.expect("writer task");
            match result {
                Ok(()) => winners.push(writer),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(other) => panic!("writer {writer}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = store.get(&k).await.expect("get");
        assert_eq!(stored, Bytes::from(format!("writer-{}", winners[0])));
    }
}
