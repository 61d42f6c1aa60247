-- Privileges: version() and preload_status() stay public; everything else
-- goes through the operational roles.
GRANT USAGE ON SCHEMA pwb TO PUBLIC;

REVOKE ALL ON ALL TABLES IN SCHEMA pwb FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pwb FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pwb FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.version(), pwb.preload_status() TO PUBLIC;

-- Monitoring: policies and telemetry.
GRANT SELECT ON pwb.policy, pwb.query_profile, pwb.active_policy_precedence TO pwb_monitor;
GRANT EXECUTE ON FUNCTION
    pwb.policies(),
    pwb.counters(),
    pwb.scope_stats(),
    pwb.query_profiles(),
    pwb.recent_decisions(integer),
    pwb.scope_names(),
    pwb.shmem_bytes(),
    pwb.waits(),
    pwb.metrics(),
    pwb.feedback()
TO pwb_monitor;
-- Monitoring systems usually connect as a pg_monitor member.
GRANT EXECUTE ON FUNCTION pwb.metrics() TO pg_monitor;

-- Tenant setters.
GRANT EXECUTE ON FUNCTION pwb.set_tenant(text, boolean), pwb.clear_tenant(), pwb.current_tenant()
TO pwb_tenant_setter;

-- Administration: policy mutation, resets, profile flush.
GRANT SELECT, INSERT, UPDATE, DELETE ON pwb.policy, pwb.query_profile TO pwb_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA pwb TO pwb_admin;
GRANT EXECUTE ON FUNCTION
    pwb.create_policy(text, text, bigint, bigint, text, integer),
    pwb.update_policy(integer, bigint, bigint, integer),
    pwb.set_policy_mode(integer, text),
    pwb.disable_policy(integer),
    pwb.set_policy_feedback_exempt(integer, boolean),
    pwb.reset_stats(),
    pwb.reset_profiles(),
    pwb.flush_profiles()
TO pwb_admin;
