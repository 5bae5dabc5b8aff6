"""Operating a running pipeline from outside: launch Dagster jobs through its GraphQL API and follow them.

Used by the command line (`shop-ops jobs ...`) and so by CI's self-hosted steps; nothing in the code
location imports it. It talks to a Dagster webserver over HTTP and never reads the settings.
"""
