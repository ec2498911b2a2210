# Later files win; dicts merge key by key.
config = {
    'environment': 'prod',
    'endpoints': {'relay_outbound': ['tcp://127.0.0.1:4002']},
}
