//! Any bytes as the query string of the routes that take one, through the same
//! deserialization and parsers the handlers use. Nothing may panic.

#![no_main]

use actix_web::web::Query;
use application::RunReportParams;
use domain::{ReportDefinition, ReportKind, TenantId, TenantSlug};
use http_api::{
    auth::TenantParam,
    routes::{
        audit::AuditListParams,
        recomputations::RunListParams,
        reports::{CatalogParams, RunParams},
    },
};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let now = datetime!(2026-11-21 12:00 UTC);
    if let Ok(params) = Query::<CatalogParams>::from_query(query) {
        let _ = params.parse();
    }
    if let Ok(params) = Query::<RunListParams>::from_query(query) {
        let _ = params.parse();
    }
    if let Ok(params) = Query::<AuditListParams>::from_query(query) {
        let _ = params.parse();
    }
    if let Ok(params) = Query::<TenantParam>::from_query(query)
        && let Some(tenant) = &params.tenant
    {
        let _ = TenantSlug::parse("tenant", tenant);
    }
    if let Ok(params) = Query::<RunParams>::from_query(query) {
        let params = RunReportParams::from(params.into_inner());
        for kind in ReportKind::ALL {
            let report = ReportDefinition::reference(kind, now);
            let _ = params.parse(TenantId::DEFAULT, &report, kind, now.date(), 366);
        }
    }
});
