"""The service layer, between the data layer and its two callers (`core` <- `db` <- `services` <-
`api`, `workers`): calibration runs, generations (queueing, waiting, their events in Redis), the
statistics read model, and sending tasks (with the broker's Redis transport both sides use).
Routers and Celery tasks stay thin; HTTP and Celery live in them, never here."""
