"""The 401 flow for HTTP clients: origins, challenges and the auth flow the client faces drive."""
