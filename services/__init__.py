"""Infrastructure shared by the API and the workers that is neither the database nor the engine."""
