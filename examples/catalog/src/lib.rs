//! A product catalogue behind ee-cache.
//!
//! - `GET /products` lists the catalogue. The response says `public,
//!   max-age=30, stale-while-revalidate=60` and is tagged `catalog`, so
//!   [`ResponseCacheLayer`] answers repeats without reaching the handler.
//! - `GET /products/{id}` reads one product through `Cache::get_or_load`: a
//!   burst of requests for a cold product reads the slow source once; an
//!   unknown id is remembered as absent for 5 s (negative caching) and
//!   answered with a 404 problem.
//! - `PUT /products/{id}` changes a product: the layer purges the cached
//!   `/products/{id}` responses itself (a successful write on a path), the
//!   handler deletes the product from the data cache (a load already running
//!   does not store its older read) and purges the `catalog` tag (the list).
//!
//! The source takes 50 ms per read, like a remote database under load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use ee_cache::{Cache, CacheStore, CacheTags, ResponseCacheLayer, Variants};
use ee_core::Problem;
use serde::{Deserialize, Serialize};

/// A product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its price in cents.
    pub price_cents: u64,
}

/// A change to a product.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductChange {
    /// The new name.
    pub name: String,
    /// The new price in cents.
    pub price_cents: u64,
}

/// The system of record: slow on purpose, and counting its reads.
#[derive(Clone, Default)]
pub struct Source {
    products: Arc<Mutex<BTreeMap<u64, Product>>>,
    reads: Arc<AtomicU64>,
    latency: Duration,
}

impl Source {
    /// A source with `n` demo products, taking `latency` per read.
    pub fn demo(n: u64, latency: Duration) -> Self {
        let products = (1..=n)
            .map(|id| {
                let product = Product {
                    id,
                    name: format!("Product {id}"),
                    price_cents: 990 + id * 100,
                };
                (id, product)
            })
            .collect();
        Self {
            products: Arc::new(Mutex::new(products)),
            reads: Arc::default(),
            latency,
        }
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    async fn read<T>(&self, f: impl FnOnce(&BTreeMap<u64, Product>) -> T) -> T {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        f(&self.products.lock().expect("source"))
    }

    /// One product.
    pub async fn product(&self, id: u64) -> Option<Product> {
        self.read(|p| p.get(&id).cloned()).await
    }

    /// Every product.
    pub async fn list(&self) -> Vec<Product> {
        self.read(|p| p.values().cloned().collect()).await
    }

    /// Changes a product; false if there is none.
    pub fn update(&self, id: u64, change: ProductChange) -> bool {
        let mut products = self.products.lock().expect("source");
        match products.get_mut(&id) {
            Some(p) => {
                p.name = change.name;
                p.price_cents = change.price_cents;
                true
            }
            None => false,
        }
    }
}

/// What the handlers share.
pub struct Catalog<P, H> {
    /// The system of record.
    pub source: Source,
    /// Products by id.
    pub products: Cache<u64, Product, P>,
    /// The HTTP response cache (to purge the list).
    pub http: ResponseCacheLayer<H>,
}

impl<P, H> Clone for Catalog<P, H> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            products: self.products.clone(),
            http: self.http.clone(),
        }
    }
}

/// The router: the routes above, behind the response cache.
pub fn app<P, H>(catalog: Catalog<P, H>) -> Router
where
    P: CacheStore<Product>,
    H: CacheStore<Variants>,
{
    let layer = catalog.http.clone();
    Router::new()
        .route("/products", get(list::<P, H>))
        .route("/products/{id}", get(one::<P, H>).put(change::<P, H>))
        .with_state(catalog)
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND).with_detail("no such route") })
        .layer(layer)
}

async fn list<P, H>(State(c): State<Catalog<P, H>>) -> Response
where
    P: CacheStore<Product>,
    H: CacheStore<Variants>,
{
    (
        [(
            "cache-control",
            "public, max-age=30, stale-while-revalidate=60",
        )],
        Extension(CacheTags(vec!["catalog".into()])),
        Json(c.source.list().await),
    )
        .into_response()
}

async fn one<P, H>(State(c): State<Catalog<P, H>>, Path(id): Path<u64>) -> Response
where
    P: CacheStore<Product>,
    H: CacheStore<Variants>,
{
    let source = c.source.clone();
    let loaded = c
        .products
        .get_or_load(&id, move || async move {
            Ok::<_, std::convert::Infallible>(source.product(id).await)
        })
        .await;
    match loaded {
        Ok(Some(product)) => (
            [("cache-control", "public, max-age=10")],
            Extension(CacheTags(vec![format!("product:{id}")])),
            Json(product),
        )
            .into_response(),
        Ok(None) => Problem::new(StatusCode::NOT_FOUND)
            .with_detail(format!("no product {id}"))
            .into_response(),
        Err(never) => match *never {},
    }
}

async fn change<P, H>(
    State(c): State<Catalog<P, H>>,
    Path(id): Path<u64>,
    Json(change): Json<ProductChange>,
) -> Response
where
    P: CacheStore<Product>,
    H: CacheStore<Variants>,
{
    if !c.source.update(id, change) {
        return Problem::new(StatusCode::NOT_FOUND)
            .with_detail(format!("no product {id}"))
            .into_response();
    }
    // The data cache forgets the product, the HTTP cache the list; the layer
    // purges `/products/{id}` itself after this successful PUT.
    let _ = c.products.delete(&id).await;
    c.http.purge_tag("catalog").await;
    StatusCode::NO_CONTENT.into_response()
}
