// The `upload` namespace of the public API: resumable upload of a file to Azure Blob Storage
// through a container SAS URL. Rule: exactly what README.md's Library section documents; the rest
// of lib/upload is internal (import it by file inside lib/). test/exports.test.ts holds the list.
export { uploadFile, type UploadResult } from './blob-upload';
export type { UploadFileOptions } from './options';
export { ContainerSasUrl, parseContainerSasUrl, SasExpiredError, SAS_URL_VARIABLE, type ParseContainerSasOptions } from './sas-url';
export { UploadError, UploadAbortedError, type UploadErrorInit } from './errors';
export type { UploadEvent, UploadEventListener } from './events';
