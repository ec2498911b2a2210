config = {
    'topic_prefix': 'org.example',
    'environment': 'stg',
    'endpoints': {'relay_outbound': 'tcp://127.0.0.1:4001', 'a': ['tcp://a:1']},
    'relay_inbound': "tcp://127.0.0.1:2003",
}
