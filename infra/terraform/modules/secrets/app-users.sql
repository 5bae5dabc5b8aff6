-- The app's two alternating database users (AWS's alternating-users rotation, modules/secrets), made
-- once per environment by the master user before the first rotation, through the bastion:
--
--   psql "host=<RDS address> dbname=shop user=shop sslmode=require" -f app-users.sql
--   psql ... -c '\password shop_app'    (paste the password of <prefix>/db; psql sends only a SCRAM verifier)
--
-- psql variables: master (default shop, the RDS master user), app (default shop_app). Idempotent.
-- Both users are members of the master role and act as it (ALTER ROLE ... SET role), so whatever a
-- migration creates belongs to the master role whichever user ran it, and both users reach the same
-- tables. <app>_clone gets its first password from the first rotation (the rotation function sets
-- the idle user's password with the master login); until then it cannot log in.
\set ON_ERROR_STOP 1
\if :{?master}
\else
  \set master shop
\endif
\if :{?app}
\else
  \set app shop_app
\endif
\set clone :app _clone

SELECT format('CREATE ROLE %I LOGIN', u)
  FROM unnest(ARRAY[:'app', :'clone']) AS u
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = u) \gexec
SELECT format('GRANT %I TO %I', :'master', u) FROM unnest(ARRAY[:'app', :'clone']) AS u \gexec
SELECT format('ALTER ROLE %I SET role = %L', u, :'master') FROM unnest(ARRAY[:'app', :'clone']) AS u \gexec
