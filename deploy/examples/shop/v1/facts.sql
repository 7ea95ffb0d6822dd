-- The canonical facts of schema v1, for ctl verify and cutover-check: one
-- row per customer, key first. v2's facts.sql gives the same rows from its
-- own tables when both hold the same facts.
SELECT id AS customer, name, email, changes FROM customers
