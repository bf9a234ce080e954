//! How to read a message: its fields by number, each with its JSON name,
//! type and shape. Written from the field numbers in the `protobuf:` struct
//! tags of k8s.io/api and k8s.io/apimachinery (the numbers are the wire
//! contract; the names are the JSON ones).

/// One message type.
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, number: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.number == number)
    }
}

/// What one field holds.
#[derive(Clone, Copy)]
pub enum Kind {
    String,
    /// JSON: base64.
    Bytes,
    /// int32/int64 varints (negative int32 values are sign-extended on the wire).
    Int,
    Bool,
    /// `metav1.Time` (seconds, nanos); the zero time is an empty message.
    Time,
    /// `intstr.IntOrString`: type (0 int, 1 string), intVal, strVal.
    IntOrString,
    Message(&'static Message),
    /// `map<string, string>`: repeated entries of key = 1, value = 2.
    StringMap,
    /// `map<string, bytes>`.
    BytesMap,
    /// `map<string, Quantity>` (resource lists); a `resource.Quantity` is a
    /// message with its string form in field 1.
    QuantityMap,
}

/// How a field sits in its parent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A Go value field: always on the wire, `omitempty` in JSON, so a zero
    /// value is dropped.
    Value,
    /// A Go pointer: on the wire only when set, and a zero is meaningful
    /// (`replicas: 0`).
    Pointer,
    Repeated,
    /// A Go embedded struct (`json:",inline"`): its fields join the parent's.
    Inline,
}

pub struct Field {
    pub number: u32,
    pub json: &'static str,
    pub kind: Kind,
    pub shape: Shape,
}

const fn f(number: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        number,
        json,
        kind,
        shape: Shape::Value,
    }
}

const fn s(number: u32, json: &'static str) -> Field {
    f(number, json, Kind::String)
}

const fn int(number: u32, json: &'static str) -> Field {
    f(number, json, Kind::Int)
}

const fn boolean(number: u32, json: &'static str) -> Field {
    f(number, json, Kind::Bool)
}

const fn m(number: u32, json: &'static str, msg: &'static Message) -> Field {
    f(number, json, Kind::Message(msg))
}

const fn ptr(number: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        number,
        json,
        kind,
        shape: Shape::Pointer,
    }
}

const fn rep(number: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        number,
        json,
        kind,
        shape: Shape::Repeated,
    }
}

const fn inline(number: u32, msg: &'static Message) -> Field {
    Field {
        number,
        json: "",
        kind: Kind::Message(msg),
        shape: Shape::Inline,
    }
}

// === k8s.io/apimachinery ===

/// `runtime.Unknown`, the envelope after the `k8s\0` magic.
pub static UNKNOWN: Message = Message {
    name: "Unknown",
    fields: &[
        m(1, "typeMeta", &TYPE_META),
        f(2, "raw", Kind::Bytes),
        s(3, "contentEncoding"),
        s(4, "contentType"),
    ],
};

pub static TYPE_META: Message = Message {
    name: "TypeMeta",
    fields: &[s(1, "apiVersion"), s(2, "kind")],
};

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        s(1, "name"),
        s(2, "generateName"),
        s(3, "namespace"),
        s(4, "selfLink"),
        s(5, "uid"),
        s(6, "resourceVersion"),
        int(7, "generation"),
        f(8, "creationTimestamp", Kind::Time),
        f(9, "deletionTimestamp", Kind::Time),
        ptr(10, "deletionGracePeriodSeconds", Kind::Int),
        f(11, "labels", Kind::StringMap),
        f(12, "annotations", Kind::StringMap),
        rep(13, "ownerReferences", Kind::Message(&OWNER_REFERENCE)),
        rep(14, "finalizers", Kind::String),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        s(1, "kind"),
        s(3, "name"),
        s(4, "uid"),
        s(5, "apiVersion"),
        ptr(6, "controller", Kind::Bool),
        ptr(7, "blockOwnerDeletion", Kind::Bool),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", Kind::StringMap),
        rep(2, "matchExpressions", Kind::Message(&SELECTOR_REQUIREMENT)),
    ],
};

static SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        s(1, "key"),
        s(2, "operator"),
        rep(3, "values", Kind::String),
    ],
};

// === core/v1 ===

pub static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &NAMESPACE_SPEC),
        m(3, "status", &NAMESPACE_STATUS),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[rep(1, "finalizers", Kind::String)],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[s(1, "phase")],
};

pub static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        f(2, "data", Kind::StringMap),
        f(3, "binaryData", Kind::BytesMap),
        ptr(4, "immutable", Kind::Bool),
    ],
};

pub static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        f(2, "data", Kind::BytesMap),
        s(3, "type"),
        f(4, "stringData", Kind::StringMap),
        ptr(5, "immutable", Kind::Bool),
    ],
};

pub static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &SERVICE_SPEC),
        m(3, "status", &SERVICE_STATUS),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        rep(1, "ports", Kind::Message(&SERVICE_PORT)),
        f(2, "selector", Kind::StringMap),
        s(3, "clusterIP"),
        s(4, "type"),
        rep(5, "externalIPs", Kind::String),
        s(7, "sessionAffinity"),
        s(8, "loadBalancerIP"),
        rep(9, "loadBalancerSourceRanges", Kind::String),
        s(10, "externalName"),
        s(11, "externalTrafficPolicy"),
        int(12, "healthCheckNodePort"),
        boolean(13, "publishNotReadyAddresses"),
        rep(18, "clusterIPs", Kind::String),
        rep(19, "ipFamilies", Kind::String),
        ptr(17, "ipFamilyPolicy", Kind::String),
        ptr(20, "allocateLoadBalancerNodePorts", Kind::Bool),
        ptr(21, "loadBalancerClass", Kind::String),
        ptr(22, "internalTrafficPolicy", Kind::String),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        s(1, "name"),
        s(2, "protocol"),
        int(3, "port"),
        f(4, "targetPort", Kind::IntOrString),
        int(5, "nodePort"),
        ptr(6, "appProtocol", Kind::String),
    ],
};

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[m(1, "loadBalancer", &LOAD_BALANCER_STATUS)],
};

static LOAD_BALANCER_STATUS: Message = Message {
    name: "LoadBalancerStatus",
    fields: &[],
};

pub static POD: Message = Message {
    name: "Pod",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &POD_SPEC),
        m(3, "status", &POD_STATUS),
    ],
};

static POD_STATUS: Message = Message {
    name: "PodStatus",
    fields: &[
        s(1, "phase"),
        s(3, "message"),
        s(4, "reason"),
        s(5, "hostIP"),
        s(6, "podIP"),
    ],
};

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[m(1, "metadata", &OBJECT_META), m(2, "spec", &POD_SPEC)],
};

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        rep(2, "containers", Kind::Message(&CONTAINER)),
        s(3, "restartPolicy"),
        ptr(4, "terminationGracePeriodSeconds", Kind::Int),
        ptr(5, "activeDeadlineSeconds", Kind::Int),
        s(6, "dnsPolicy"),
        f(7, "nodeSelector", Kind::StringMap),
        s(8, "serviceAccountName"),
        s(9, "serviceAccount"),
        s(10, "nodeName"),
        boolean(11, "hostNetwork"),
        boolean(12, "hostPID"),
        boolean(13, "hostIPC"),
        rep(
            15,
            "imagePullSecrets",
            Kind::Message(&LOCAL_OBJECT_REFERENCE),
        ),
        s(16, "hostname"),
        s(17, "subdomain"),
        s(19, "schedulerName"),
        rep(20, "initContainers", Kind::Message(&CONTAINER)),
        ptr(21, "automountServiceAccountToken", Kind::Bool),
        s(24, "priorityClassName"),
        ptr(25, "priority", Kind::Int),
        ptr(27, "shareProcessNamespace", Kind::Bool),
        ptr(29, "runtimeClassName", Kind::String),
        ptr(30, "enableServiceLinks", Kind::Bool),
        ptr(31, "preemptionPolicy", Kind::String),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[s(1, "name")],
};

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        s(1, "name"),
        s(2, "image"),
        rep(3, "command", Kind::String),
        rep(4, "args", Kind::String),
        s(5, "workingDir"),
        rep(6, "ports", Kind::Message(&CONTAINER_PORT)),
        rep(7, "env", Kind::Message(&ENV_VAR)),
        m(8, "resources", &RESOURCE_REQUIREMENTS),
        rep(9, "volumeMounts", Kind::Message(&VOLUME_MOUNT)),
        s(13, "terminationMessagePath"),
        s(14, "imagePullPolicy"),
        boolean(16, "stdin"),
        boolean(17, "stdinOnce"),
        boolean(18, "tty"),
        s(20, "terminationMessagePolicy"),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        s(1, "name"),
        int(2, "hostPort"),
        int(3, "containerPort"),
        s(4, "protocol"),
        s(5, "hostIP"),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[
        s(1, "name"),
        s(2, "value"),
        m(3, "valueFrom", &ENV_VAR_SOURCE),
    ],
};

static ENV_VAR_SOURCE: Message = Message {
    name: "EnvVarSource",
    fields: &[
        m(1, "fieldRef", &OBJECT_FIELD_SELECTOR),
        m(3, "configMapKeyRef", &KEY_SELECTOR),
        m(4, "secretKeyRef", &KEY_SELECTOR),
    ],
};

static OBJECT_FIELD_SELECTOR: Message = Message {
    name: "ObjectFieldSelector",
    fields: &[s(1, "apiVersion"), s(2, "fieldPath")],
};

/// ConfigMapKeySelector and SecretKeySelector share this layout.
static KEY_SELECTOR: Message = Message {
    name: "KeySelector",
    fields: &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        s(2, "key"),
        ptr(3, "optional", Kind::Bool),
    ],
};

static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        f(1, "limits", Kind::QuantityMap),
        f(2, "requests", Kind::QuantityMap),
    ],
};

static VOLUME_MOUNT: Message = Message {
    name: "VolumeMount",
    fields: &[
        s(1, "name"),
        boolean(2, "readOnly"),
        s(3, "mountPath"),
        s(4, "subPath"),
    ],
};

// === apps/v1 ===

pub static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &DEPLOYMENT_SPEC),
        m(3, "status", &DEPLOYMENT_STATUS),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        ptr(1, "replicas", Kind::Int),
        m(2, "selector", &LABEL_SELECTOR),
        m(3, "template", &POD_TEMPLATE_SPEC),
        m(4, "strategy", &DEPLOYMENT_STRATEGY),
        int(5, "minReadySeconds"),
        ptr(6, "revisionHistoryLimit", Kind::Int),
        boolean(7, "paused"),
        ptr(9, "progressDeadlineSeconds", Kind::Int),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[s(1, "type"), m(2, "rollingUpdate", &ROLLING_UPDATE)],
};

static ROLLING_UPDATE: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        f(1, "maxUnavailable", Kind::IntOrString),
        f(2, "maxSurge", Kind::IntOrString),
    ],
};

static DEPLOYMENT_STATUS: Message = Message {
    name: "DeploymentStatus",
    fields: &[
        int(1, "observedGeneration"),
        int(2, "replicas"),
        int(3, "updatedReplicas"),
        int(4, "availableReplicas"),
        int(5, "unavailableReplicas"),
        int(7, "readyReplicas"),
    ],
};

// === autoscaling/v1 ===

pub static SCALE: Message = Message {
    name: "Scale",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &SCALE_SPEC),
        m(3, "status", &SCALE_STATUS),
    ],
};

static SCALE_SPEC: Message = Message {
    name: "ScaleSpec",
    // Kept when zero: scaling to 0 must not read as "unset".
    fields: &[ptr(1, "replicas", Kind::Int)],
};

static SCALE_STATUS: Message = Message {
    name: "ScaleStatus",
    fields: &[ptr(1, "replicas", Kind::Int), s(2, "selector")],
};

/// The message of a built-in kind, by apiVersion and kind.
pub fn for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "Service") => &SERVICE,
        ("v1", "Pod") => &POD,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("autoscaling/v1", "Scale") => &SCALE,
        _ => return None,
    })
}
