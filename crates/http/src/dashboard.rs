//! The dashboard (`GET /`) and the API explorer (`GET /api/v1/docs`): static files built into
//! the binary, served with a content security policy that lets a page load only from this
//! server and talk only to it. Nothing is built at run time and no request leaves the
//! machine: the chart library and Swagger UI are vendored, at pinned versions, under
//! `assets/vendor/` with their licences.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};

/// One file of the dashboard or the explorer.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

/// Everything under `/assets/`, by path.
const ASSETS: &[Asset] = &[
    asset!("dashboard/app.js", "text/javascript; charset=utf-8"),
    asset!("dashboard/app.css", "text/css; charset=utf-8"),
    asset!("dashboard/docs.js", "text/javascript; charset=utf-8"),
    asset!(
        "vendor/uplot-1.6.32/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "vendor/uplot-1.6.32/uPlot.min.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "vendor/swagger-ui-5.35.0/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "vendor/swagger-ui-5.35.0/swagger-ui.css",
        "text/css; charset=utf-8"
    ),
];

const INDEX: &[u8] = include_bytes!("../assets/dashboard/index.html");
const DOCS: &[u8] = include_bytes!("../assets/dashboard/docs.html");

/// Scripts, styles, fonts, images and requests from this server alone; inline styles only
/// (Swagger UI and the charts set them), never inline scripts; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A page: HTML that is never cached (it names the assets of this build).
fn page(body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// `GET /`: the dashboard.
pub async fn index() -> HttpResponse {
    page(INDEX)
}

/// `GET /api/v1/docs`: the API explorer over `/api/v1/openapi.json`.
pub async fn docs() -> HttpResponse {
    page(DOCS)
}

/// `GET /assets/{path}`: a built-in file, or the API's JSON 404.
pub async fn asset(
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, crate::error::ApiError> {
    match ASSETS.iter().find(|a| a.path == path.as_str()) {
        Some(asset) => Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            // The vendored files' paths carry their version; the dashboard's own change with
            // the binary, so they are revalidated after an hour at most.
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(asset.body)),
        None => crate::routes::not_found(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_a_page_names_is_served() {
        for page in [INDEX, DOCS] {
            let page = std::str::from_utf8(page).unwrap_or_default();
            for part in page.split("\"/assets/").skip(1) {
                let path = part.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{path} is named by a page but not served"
                );
            }
        }
    }

    #[test]
    fn no_page_or_script_of_its_own_names_another_host() {
        for asset in ASSETS.iter().filter(|a| a.path.starts_with("dashboard/")) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names another host",
                asset.path
            );
        }
        for page in [INDEX, DOCS] {
            let text = std::str::from_utf8(page).unwrap_or_default();
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
