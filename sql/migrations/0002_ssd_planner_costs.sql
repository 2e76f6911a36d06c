-- migration: 0002_ssd_planner_costs
-- Tells the planner, for this database only, that a random page read costs about as much as a
-- sequential one, as on SSD storage and Neon: 1.1 instead of the spinning-disk default of 4.
-- With the default, a user's list is read by a bitmap scan plus a sort; with 1.1 the planner walks
-- the ordered list indexes of 0001 directly: 0.38-0.57 ms instead of 0.72 ms for a typical user's
-- 111 tasks, and no sort of the 100,000-task user's list. Takes effect for new connections.
-- Needs the database owner's rights (Neon's default role has them).

DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET random_page_cost = 1.1', current_database());
END;
$$;
