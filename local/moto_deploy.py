"""Teach moto what rehearsing a deploy needs of it (``tests/test_deploy_rehearsal.py``).

moto 5.2 stores most of what ``tools/deploy.py`` sends, but a few of the calls
both deploy paths make are missing or refused. Each patch below lets moto
*record* what we send, so the rehearsal can check our wiring; none makes moto
behave like AWS beyond that (it cannot say whether AWS would accept it).

* **The ``AWS::Serverless-2016-10-31`` transform.** CloudFormation expands SAM
  resources server-side; moto does not. Templates that declare it are expanded
  with ``aws-sam-translator`` (the transform's open-source implementation)
  when moto parses them.
* **Change sets.** A stack made or updated by a change set keeps the template
  (and so the outputs) it had before; it now takes the change set's.
* **Swagger 2.0 imports.** ``chalice deploy`` and SAM both send the REST API
  as Swagger 2.0; moto imports only OpenAPI 3 (and needs ``info.description``).
  The import is redone for both, and keeps what moto's drops: each
  integration's ``responseTransferMode``, the methods' Cognito authorizer and
  the API's gateway responses (``x-amazon-apigateway-gateway-responses``).
* **``AWS::ApiGateway::RestApi`` ``Body``** is imported (moto ignores it).
* **``AWS::Lambda::Function``**: its ``Layers`` are kept (moto drops them) and
  its environment values are strings (a Number parameter stayed a number).
* **``AWS::IAM::Role``** inline policies are stored as JSON (moto stored a
  repr), without the statements ``AWS::NoValue`` removes (moto kept nulls).
* **``CommaDelimitedList`` parameters** are lists to a ``Ref`` whether given or
  left at their default (moto split only a given value, so a ``Fn::Join`` over
  a default joined its characters), and read back as the text they were given
  as (a previous value passed on with ``UsePreviousValue`` was moto's list).
* **``AWS::Cognito::UserPool``, ``UserPoolClient``, ``UserPoolGroup``,
  ``AWS::CloudWatch::Alarm`` and ``AWS::ApiGateway::Stage``** get
  CloudFormation models over moto's own backends.

What is still not emulated is reported, not hidden: ``unsupported_types``
names the template's resource types moto's CloudFormation skips.
"""

from __future__ import annotations

import json
from typing import Any

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
#: Resource types given a model here (moto 5.2.5 has none for them).
MODELLED_HERE = (
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::ApiGateway::Stage",
)
_APPLIED = False
_MODELS: list[type] = []


def apply() -> None:
    """Patch moto in this process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_sam_transform()
    _patch_rest_api_import()
    _patch_function_layers()
    _patch_role_policies()
    _patch_list_parameters()
    _register_models()
    _APPLIED = True


def unsupported_types(template: dict[str, Any]) -> list[str]:
    """The resource types in ``template`` (after the SAM transform) that moto's CloudFormation skips."""
    from moto.cloudformation.parsing import get_model_map

    apply()
    if _declares_sam(template):
        # The transform wants S3 locations for code; the types it makes do not depend on them.
        template = json.loads(json.dumps(template).replace('"./', '"s3://bucket/'))
        template = sam_transform(template)
    known = set(get_model_map())
    return sorted({r["Type"] for r in template["Resources"].values()} - known)


# -- the SAM transform ---------------------------------------------------------------------------


def _declares_sam(template: dict[str, Any]) -> bool:
    declared = template.get("Transform", [])
    return SAM_TRANSFORM in (declared if isinstance(declared, list) else [declared])


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's ``AWS::Serverless-2016-10-31`` transform makes of ``template``."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        # Our template names no AWS managed policy; the loader would otherwise ask IAM for them all.
        def load(self) -> dict[str, str]:
            return {}

    return transform(json.loads(json.dumps(template)), {}, NoManagedPolicies())


def _patch_sam_transform() -> None:
    from moto.cloudformation import models

    original = models.Stack.parse_template

    def parse_template(template: str) -> dict[str, Any]:
        parsed = original(template)
        return sam_transform(parsed) if isinstance(parsed, dict) and _declares_sam(parsed) else parsed

    models.Stack.parse_template = staticmethod(parse_template)
    change_set_parse = models.ChangeSet._parse_template

    def change_set_parse_template(self: Any) -> None:
        change_set_parse(self)
        if _declares_sam(self.template_dict):
            self.template_dict = sam_transform(self.template_dict)

    models.ChangeSet._parse_template = change_set_parse_template

    # An executed change set leaves the stack with the template (and outputs) it had before: none, for a
    # stack the change set created. The stack takes the change set's template, and its outputs follow.
    execute = models.CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        execute(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        stack.template_dict = change_set.template_dict
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    models.CloudFormationBackend.execute_change_set = execute_change_set


# -- API Gateway imports -------------------------------------------------------------------------


def _patch_rest_api_import() -> None:
    from moto.apigateway import models

    def put_rest_api(
        self: Any, function_id: str, api_doc: dict[str, Any], fail_on_warnings: bool, mode: str = "merge"
    ) -> Any:
        return _import_document(self, function_id, api_doc, mode)

    def import_rest_api(self: Any, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        info = api_doc.get("info", {})
        api = self.create_rest_api(name=info.get("title", ""), description=info.get("description", ""))
        return _import_document(self, api.id, api_doc, "overwrite")

    models.APIGatewayBackend.put_rest_api = put_rest_api
    models.APIGatewayBackend.import_rest_api = import_rest_api

    # The integration keeps its response transfer mode (BUFFERED unless set, as API Gateway reports it).
    integration_json = models.Integration.to_json

    def to_json(self: Any) -> dict[str, Any]:
        return {**integration_json(self), "responseTransferMode": getattr(self, "response_transfer_mode", "BUFFERED")}

    models.Integration.to_json = to_json

    # A RestApi resource with a Body: created from the document's title, then the document imported.
    rest_api_create = models.RestAPI.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kw: Any
    ) -> Any:
        properties = cloudformation_json["Properties"]
        body = properties.get("Body")
        if body is not None and "Name" not in properties:
            properties["Name"] = body.get("info", {}).get("title", resource_name)
        api = rest_api_create(cls, resource_name, cloudformation_json, account_id, region_name, **kw)
        if body is not None:
            _import_document(models.apigateway_backends[account_id][region_name], api.id, body, "overwrite")
        return api

    models.RestAPI.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _import_document(backend: Any, api_id: str, document: dict[str, Any], mode: str) -> Any:
    """Swagger 2.0 or OpenAPI 3 → resources, methods (with their authorizer), integrations, gateway responses."""
    api = backend.get_rest_api(api_id)
    if mode == "overwrite":
        api.resources = {}
        api.default = api.add_child("/")
        api.authorizers = {}
        api.gateway_responses = {}
    schemes = document.get("securityDefinitions") or document.get("components", {}).get("securitySchemes", {})
    authorizers = {}
    for name, scheme in schemes.items():
        spec = scheme.get("x-amazon-apigateway-authorizer")
        if spec:
            authorizers[name] = backend.create_authorizer(
                api_id,
                name=name,
                authorizer_type=spec.get("type", "cognito_user_pools").upper(),
                provider_arns=spec.get("providerARNs"),
                identity_source=f"method.request.header.{scheme.get('name', 'Authorization')}",
            ).id
    for path, methods in sorted(document.get("paths", {}).items()):
        resource = _resource_for_path(backend, api, path)
        for method, spec in methods.items():
            if method.startswith("x-") or not isinstance(spec, dict):
                continue
            security = [name for requirement in spec.get("security", []) for name in requirement]
            authorizer = next((authorizers[name] for name in security if name in authorizers), None)
            backend.put_method(
                api_id,
                resource.id,
                method.upper(),
                "COGNITO_USER_POOLS" if authorizer else "NONE",
                authorizer_id=authorizer,
            )
            for status in spec.get("responses", {}):
                backend.put_method_response(api_id, resource.id, method.upper(), status, None, None)
            integration = spec.get("x-amazon-apigateway-integration")
            if integration:
                created = backend.put_integration(
                    api_id,
                    resource.id,
                    method.upper(),
                    integration_type=integration["type"].upper(),
                    uri=integration.get("uri"),
                    integration_method=integration.get("httpMethod"),
                    passthrough_behavior=(integration.get("passthroughBehavior") or "").upper() or None,
                    timeout_in_millis=integration.get("timeoutInMillis"),
                    content_handling=integration.get("contentHandling"),
                )
                created.response_transfer_mode = integration.get("responseTransferMode", "BUFFERED")
    for kind, response in document.get("x-amazon-apigateway-gateway-responses", {}).items():
        backend.put_gateway_response(
            api_id,
            kind,
            status_code=response.get("statusCode"),
            response_parameters=response.get("responseParameters"),
            response_templates=response.get("responseTemplates"),
        )
    return api


def _resource_for_path(backend: Any, api: Any, path: str) -> Any:
    parent = api.get_resource_for_path("/")
    walked = ""
    for part in [p for p in path.split("/") if p]:
        walked += "/" + part
        found = api.get_resource_for_path(walked)
        parent = found or backend.create_resource(function_id=api.id, parent_resource_id=parent.id, path_part=part)
    return parent


def _patch_function_layers() -> None:
    from moto.awslambda import models

    create = models.LambdaFunction.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kw: Any
    ) -> Any:
        variables = cloudformation_json["Properties"].get("Environment", {}).get("Variables")
        if variables:
            # CloudFormation passes every value as a string (a Number parameter too); Lambda takes only strings.
            cloudformation_json["Properties"]["Environment"]["Variables"] = {k: str(v) for k, v in variables.items()}
        function = create(cls, resource_name, cloudformation_json, account_id, region_name, **kw)
        layers = cloudformation_json["Properties"].get("Layers")
        if layers:
            # A Ref to a layer made in the same stack resolves to moto's LayerVersion, not to its ARN.
            function.layers = function._get_layers_data([getattr(layer, "arn", layer) for layer in layers])
        return function

    models.LambdaFunction.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_role_policies() -> None:
    from moto.iam import models

    put_policy = models.Role.put_policy

    def put(self: Any, policy_name: str, policy_json: Any) -> None:
        # An AWS::IAM::Role's inline policy arrives as a dict and was stored as its repr, not as JSON; and a
        # statement that is Fn::If → AWS::NoValue stays in the list as a null, where CloudFormation drops it.
        if isinstance(policy_json, dict):
            statements = policy_json.get("Statement")
            if isinstance(statements, list):
                policy_json = {**policy_json, "Statement": [s for s in statements if s is not None]}
            policy_json = json.dumps(policy_json)
        put_policy(self, policy_name, policy_json)

    models.Role.put_policy = put


def _patch_list_parameters() -> None:
    from moto.cloudformation import parsing

    load_parameters = parsing.ResourceMap.load_parameters

    def load(self: Any) -> None:
        slots = self._template.get("Parameters", {})
        listed = [name for name, slot in slots.items() if _is_list(slot.get("Type", "String"))]
        # A previous value comes back as what moto resolved it to (a list): as given, it is text.
        for name in listed:
            if isinstance(self.input_parameters.get(name), list):
                self.input_parameters[name] = ",".join(str(item) for item in self.input_parameters[name])
        load_parameters(self)
        for name in listed:
            value = self.resolved_parameters[name]
            items = value if isinstance(value, list) else str(value).split(",")
            # What a Ref resolves to: the list, default or not. What the stack shows: the text.
            self._parsed_resources[name] = items
            self.resolved_parameters[name] = ",".join(str(item) for item in items)

    parsing.ResourceMap.load_parameters = load


def _is_list(parameter_type: str) -> bool:
    return parameter_type == "CommaDelimitedList" or parameter_type.startswith("List<")


# -- CloudFormation models moto lacks ------------------------------------------------------------


def _register_models() -> None:
    from moto.apigateway.models import apigateway_backends
    from moto.cloudformation import parsing
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.cognitoidp.models import cognitoidp_backends
    from moto.core.common_models import CloudFormationModel

    class _Model:
        """A resource made through a moto backend's own API; updated by replacement.

        Each model below also derives from CloudFormationModel directly: moto finds its models as that
        class's direct subclasses.
        """

        ATTRIBUTES: dict[str, str] = {}

        def __init__(self, physical_id: str, attributes: dict[str, str], delete: Any) -> None:
            self._physical_id = physical_id
            self._attributes = attributes
            self._delete = delete

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in cls.ATTRIBUTES

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            if attribute_name not in self._attributes:
                raise UnformattedGetAttTemplateException()
            return self._attributes[attribute_name]

        @property
        def physical_resource_id(self) -> str:
            return self._physical_id

        def is_created(self) -> bool:
            return True

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, account_id: str,
            region_name: str,
        ) -> Any:  # fmt: skip
            original_resource._delete()
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

        def delete(self, account_id: str, region_name: str) -> None:
            self._delete()

    class UserPool(_Model, CloudFormationModel):
        ATTRIBUTES = {"Arn": "", "ProviderName": "", "ProviderURL": "", "UserPoolId": ""}

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPool"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            backend = cognitoidp_backends[account_id][region_name]
            properties = dict(cloudformation_json["Properties"])
            name = properties.pop("UserPoolName", resource_name)
            pool = backend.create_user_pool(name, properties)
            attributes = {
                "Arn": pool.arn,
                "UserPoolId": pool.id,
                "ProviderName": f"cognito-idp.{region_name}.amazonaws.com/{pool.id}",
                "ProviderURL": f"https://cognito-idp.{region_name}.amazonaws.com/{pool.id}",
            }
            return cls(pool.id, attributes, lambda: backend.user_pools.pop(pool.id, None))

    class UserPoolClient(_Model, CloudFormationModel):
        ATTRIBUTES = {"ClientId": "", "Name": ""}

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPoolClient"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            backend = cognitoidp_backends[account_id][region_name]
            properties = dict(cloudformation_json["Properties"])
            pool_id = properties.pop("UserPoolId")
            generate_secret = bool(properties.pop("GenerateSecret", False))
            client = backend.create_user_pool_client(pool_id, generate_secret, properties)
            pool = backend.user_pools[pool_id]
            return cls(
                client.id,
                {"ClientId": client.id, "Name": properties.get("ClientName", "")},
                lambda: pool.clients.pop(client.id, None),
            )

    class UserPoolGroup(_Model, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPoolGroup"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            backend = cognitoidp_backends[account_id][region_name]
            properties = cloudformation_json["Properties"]
            pool_id, name = properties["UserPoolId"], properties.get("GroupName", resource_name)
            backend.create_group(
                pool_id,
                name,
                properties.get("Description", ""),
                properties.get("RoleArn"),
                properties.get("Precedence"),
            )
            return cls(name, {}, lambda: backend.user_pools[pool_id].groups.pop(name, None))

    class Alarm(_Model, CloudFormationModel):
        ATTRIBUTES = {"Arn": ""}

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            backend = cloudwatch_backends[account_id][region_name]
            p = cloudformation_json["Properties"]
            name = p.get("AlarmName") or resource_name
            alarm = backend.put_metric_alarm(
                name=name,
                namespace=p.get("Namespace"),
                metric_name=p.get("MetricName"),
                metric_data_queries=None,
                comparison_operator=p.get("ComparisonOperator"),
                evaluation_periods=p.get("EvaluationPeriods"),
                datapoints_to_alarm=p.get("DatapointsToAlarm"),
                period=p.get("Period"),
                threshold=p.get("Threshold"),
                statistic=p.get("Statistic"),
                extended_statistic=p.get("ExtendedStatistic"),
                description=p.get("AlarmDescription"),
                dimensions=p.get("Dimensions", []),
                alarm_actions=p.get("AlarmActions", []),
                ok_actions=p.get("OKActions", []),
                insufficient_data_actions=p.get("InsufficientDataActions", []),
                unit=p.get("Unit"),
                actions_enabled=p.get("ActionsEnabled", True),
                treat_missing_data=p.get("TreatMissingData"),
                evaluate_low_sample_count_percentile=None,
                threshold_metric_id=p.get("ThresholdMetricId"),
                rule=None,
                tags=[],
            )
            return cls(name, {"Arn": alarm.alarm_arn}, lambda: backend.alarms.pop(name, None))

    class Stage(_Model, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ApiGateway::Stage"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            backend = apigateway_backends[account_id][region_name]
            p = cloudformation_json["Properties"]
            api, name = p["RestApiId"], p["StageName"]
            # A Ref to a deployment in the same stack resolves to moto's Deployment, not to its id.
            deployment = getattr(p["DeploymentId"], "id", p["DeploymentId"])
            backend.create_stage(api, name, deployment, variables=p.get("Variables"))
            return cls(name, {}, lambda: backend.get_rest_api(api).stages.pop(name, None))

    # moto finds models as CloudFormationModel.__subclasses__(), which holds them only weakly.
    _MODELS.extend([UserPool, UserPoolClient, UserPoolGroup, Alarm, Stage])
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
