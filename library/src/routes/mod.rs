//! HTTP routes: health and metrics, the JSON API under `/api/v1`, static files, the pages.

pub mod api;
pub mod health;
pub mod pages;
