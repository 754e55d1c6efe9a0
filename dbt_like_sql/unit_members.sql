-- Which user_ids make up each unit: the distinct (unit, user_id) pairs of the in-window
-- exposures. Metric events carry only user_id, so a unit's events are those of all its members.
-- A user_id seen under two unit values is a member of both, and its events count for both.
-- When unit = "user_id" this is the identity; the metric templates then join events directly.
SELECT DISTINCT unit, user_id
FROM {{ ref('in_window_exposures') }}
