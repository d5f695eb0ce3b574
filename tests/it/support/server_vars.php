<?php
// What a PHP app behind wxgate reads of the request headers: every HTTP_* entry of
// $_SERVER, as PHP's built-in server (the CGI convention) names them.
$headers = [];
foreach ($_SERVER as $name => $value) {
    if (strncmp($name, "HTTP_", 5) === 0) {
        $headers[$name] = $value;
    }
}
header("Content-Type: application/json");
echo json_encode($headers);
