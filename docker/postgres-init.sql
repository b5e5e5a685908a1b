-- Run once by the postgres image when its volume is new. cruscotto reads with `cruscotto_lettore`,
-- a role that can only SELECT: the schemas and tables the simulator (role `cruscotto`) creates later
-- are readable by it through default privileges.
CREATE ROLE cruscotto_lettore LOGIN PASSWORD 'lettore';
ALTER DEFAULT PRIVILEGES FOR ROLE cruscotto GRANT USAGE ON SCHEMAS TO cruscotto_lettore;
ALTER DEFAULT PRIVILEGES FOR ROLE cruscotto GRANT SELECT ON TABLES TO cruscotto_lettore;
