-- Per-user throttling configuration (see docs/pg_throttle.md).
CREATE TABLE throttlings (
    username text PRIMARY KEY,
    query_throttle int CHECK (query_throttle > 0),
    seq_scan_throttle int CHECK (seq_scan_throttle > 0),
    idx_scan_throttle int CHECK (idx_scan_throttle > 0),
    idx_only_scan_throttle int CHECK (idx_only_scan_throttle > 0),
    bitmap_heap_scan_throttle int CHECK (bitmap_heap_scan_throttle > 0),
    bitmap_index_scan_throttle int CHECK (bitmap_index_scan_throttle > 0),
    custom_scan_throttle int CHECK (custom_scan_throttle > 0),
    foreign_scan_throttle int CHECK (foreign_scan_throttle > 0),
    tid_range_scan_throttle int CHECK (tid_range_scan_throttle > 0),
    modify_scan_throttle int CHECK (modify_scan_throttle > 0),
    values_scan_throttle int CHECK (values_scan_throttle > 0),
    result_scan_throttle int CHECK (result_scan_throttle > 0),
    func_scan_throttle int CHECK (func_scan_throttle > 0)
);
ALTER TABLE throttlings ENABLE ROW LEVEL SECURITY;
CREATE POLICY throttlings_own_row ON throttlings USING (username = current_user);
REVOKE ALL ON TABLE throttlings FROM PUBLIC;
