//! The statement shape every snapshot read shares: a page of grouped rows with the whole
//! read's row count, its newest `computed_at` and the oldest change it does not count, at once.

/// A read as one statement. `grouped` selects the grouped rows, each with the columns
/// `columns` and a `computed_at`; the page takes them in `order`, `$limit` rows from
/// `$limit + 1`, and the dirty buckets of tenant `$1`'s report `$2` and window `$3` starting
/// in `$limit + 2 ..= $limit + 3` are read beside them. Every row carries the total,
/// `last_refreshed_at` and `uncounted_since` (the oldest dirty bucket's first mark); an
/// empty page is one row of nulls carrying them, and the `extra` expressions (over `grouped`
/// and the parameters) as more columns.
pub(crate) fn paged_read(
    grouped: &str,
    columns: &[&str],
    order: &str,
    limit: usize,
    extra: &[String],
) -> String {
    let (offset, changed_from, changed_to) = (limit + 1, limit + 2, limit + 3);
    let selected = columns.join(", ");
    let paged = columns
        .iter()
        .map(|c| format!("page.{c}"))
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH grouped AS ({grouped}
        ), page AS (
            SELECT {selected}, row_number() OVER (ORDER BY {order}) AS n
            FROM grouped
            ORDER BY n
            LIMIT ${limit} OFFSET ${offset}
        )
        SELECT (SELECT count(*) FROM grouped)::int8 AS total_rows,
               (SELECT max(computed_at) FROM grouped) AS last_refreshed_at,
               (SELECT min(first_marked_at) FROM dirty_buckets
                WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3
                  AND bucket_start BETWEEN ${changed_from} AND ${changed_to}) AS uncounted_since,
               {paged}
        FROM (SELECT 1) AS one
        LEFT JOIN page ON true
        ORDER BY page.n"
    )
}
