"""OpenAI's Responses API (`/v1/responses`): wire models, routes, event renderer, response store."""
