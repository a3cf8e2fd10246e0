//! ReBAC: OpenFGA semantics case by case on every tuple store (memory,
//! SQLite, PostgreSQL), model errors with line numbers, bounds, and the
//! `Authorize` integration.
//!
//! PostgreSQL: `EE_DATABASE_URL` or postgres://postgres@127.0.0.1:5432/test
//! (each test gets a schema of its own).

#[path = "rebac/env.rs"]
mod env;
#[path = "rebac/lists.rs"]
mod lists;
#[path = "rebac/model.rs"]
mod model;
#[path = "rebac/other.rs"]
mod other;
#[path = "rebac/pushdown.rs"]
mod pushdown;
#[path = "rebac/semantics.rs"]
mod semantics;

/// Each case of `semantics`, once per store.
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $case() { crate::semantics::$case(crate::env::Backend::Memory).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $case() { crate::semantics::$case(crate::env::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { crate::semantics::$case(crate::env::Backend::Postgres).await })*
        }
    };
}

on_every_store!(
    direct,
    computed_usersets,
    tuple_to_userset_through_parent_folders,
    union_intersection_exclusion,
    parenthesised_exclusion,
    wildcard,
    usersets_and_the_userset_itself,
    nested_groups,
    cycles_end_without_a_path,
    depth_limit,
    fanout_and_lookup_limits,
    list_objects,
    list_users,
    expand,
    writes_are_checked_against_the_model,
    delete_and_idempotent_writes,
    check_cache_is_shared_within_a_request,
);
