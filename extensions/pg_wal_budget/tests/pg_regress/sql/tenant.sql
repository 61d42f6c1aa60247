-- Trusted tenant: backend-local, set and cleared by superusers and pwb_tenant_setter members.
SELECT pwb.current_tenant();
SELECT pwb.set_tenant('  acme  ');
SELECT pwb.current_tenant();
SELECT pwb.set_tenant(NULL);
SELECT pwb.set_tenant('');
SELECT pwb.set_tenant(repeat('t', 257));
SELECT pwb.current_tenant();
SELECT pwb.clear_tenant();
SELECT pwb.current_tenant();
