"""The seed's deployment script, as a user runs it from the project folder."""

from flows.etl import gather_flow

from legato.deployments import Deployment

my_dep = Deployment.build_from_flow(
    flow=gather_flow,
    name="GCP-to-BQ-flow",
    parameters={"year": 2020, "color": "yellow", "months": [1, 2]},
)


if __name__ == "__main__":
    print(my_dep.apply())
