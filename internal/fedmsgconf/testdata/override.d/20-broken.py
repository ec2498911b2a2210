config = dict(environment='dev'
