//! The five services. Each is an axum `Router` mounted under `/v1` by
//! [`crate::common::deploy`].

pub mod notification;
pub mod order;
pub mod payment;
pub mod product;
pub mod provider;
pub mod reconcile;
pub mod user;
