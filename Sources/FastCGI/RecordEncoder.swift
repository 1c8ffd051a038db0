// Appending whole records to a byte buffer.

/// Appends complete records (header, content, zero padding to a multiple of
/// 8) to a `[UInt8]`. Content longer than 65535 bytes is split into several
/// records of the same type: 65528 bytes each (a multiple of 8, so no padding)
/// and then the rest.
public enum RecordEncoder {
    /// Appends `content` as one record of `type`, or several if it is longer
    /// than 65535 bytes. Empty content appends one empty record, which for a
    /// stream type (PARAMS, STDIN, STDOUT, STDERR, DATA) ends the stream.
    @inlinable
    public static func append(_ type: RecordType, requestID: UInt16, content: UnsafeRawBufferPointer,
                              to buffer: inout [UInt8]) {
        let count = content.count
        var offset = 0
        repeat {
            let left = count - offset
            let chunk = left <= FastCGIConstants.maxContentLength ? left : FastCGIConstants.maxAlignedContentLength
            appendRecord(type, requestID: requestID,
                         content: UnsafeRawBufferPointer(rebasing: content[offset ..< offset + chunk]), to: &buffer)
            offset += chunk
        } while offset < count
    }

    /// Appends one record: header, `content` (at most 65535 bytes) and padding.
    /// Everything is appended from raw buffers, which Array copies with memcpy
    /// even in debug builds.
    @inlinable
    static func appendRecord(_ type: RecordType, requestID: UInt16, content: UnsafeRawBufferPointer,
                             to buffer: inout [UInt8]) {
        let padding = RecordHeader.padding(forContentLength: content.count)
        let header = RecordHeader(type: type, requestID: requestID,
                                  contentLength: UInt16(truncatingIfNeeded: content.count), paddingLength: padding)
        var headerBytes: UInt64 = 0
        withUnsafeMutableBytes(of: &headerBytes) { header.write(to: $0.baseAddress!) }
        withUnsafeBytes(of: headerBytes) { buffer.append(contentsOf: $0) }
        if !content.isEmpty { buffer.append(contentsOf: content) }
        if padding > 0 {
            withUnsafeBytes(of: UInt64(0)) { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0 ..< Int(padding)])) }
        }
    }

    /// Appends `content` as one or more records of `type` (see the raw-buffer
    /// variant).
    @inlinable
    public static func append(_ type: RecordType, requestID: UInt16, content: [UInt8], to buffer: inout [UInt8]) {
        content.withUnsafeBytes { append(type, requestID: requestID, content: $0, to: &buffer) }
    }

    /// Appends one record with no content: the end of a stream (PARAMS, STDIN,
    /// STDOUT, STDERR, DATA), or an ABORT_REQUEST.
    @inlinable
    public static func appendEmpty(_ type: RecordType, requestID: UInt16, to buffer: inout [UInt8]) {
        appendRecord(type, requestID: requestID, content: UnsafeRawBufferPointer(start: nil, count: 0), to: &buffer)
    }

    /// Appends a fixed 8-byte body record (no padding needed).
    @inlinable
    static func appendFixed(_ type: RecordType, requestID: UInt16, body: [UInt8], to buffer: inout [UInt8]) {
        append(type, requestID: requestID, content: body, to: &buffer)
    }

    @inlinable
    public static func appendBeginRequest(requestID: UInt16, role: Role = .responder, keepConnection: Bool,
                                          to buffer: inout [UInt8]) {
        appendFixed(.beginRequest, requestID: requestID,
                    body: BeginRequestBody(role: role, keepConnection: keepConnection).encoded(), to: &buffer)
    }

    @inlinable
    public static func appendEndRequest(requestID: UInt16, appStatus: UInt32 = 0,
                                        protocolStatus: ProtocolStatus = .requestComplete,
                                        to buffer: inout [UInt8]) {
        appendFixed(.endRequest, requestID: requestID,
                    body: EndRequestBody(appStatus: appStatus, protocolStatus: protocolStatus).encoded(),
                    to: &buffer)
    }

    @inlinable
    public static func appendAbortRequest(requestID: UInt16, to buffer: inout [UInt8]) {
        appendEmpty(.abortRequest, requestID: requestID, to: &buffer)
    }

    /// Appends PARAMS records carrying `params`, then the empty PARAMS record
    /// that ends the stream.
    ///
    /// Pairs are packed whole into records of at most 65535 bytes: a pair is
    /// split across records only when it is longer than that by itself. (The
    /// protocol allows any split, but PHP's SAPI parses each PARAMS record on
    /// its own, so a pair cut in two is lost there.)
    public static func appendParams(requestID: UInt16, params: [(String, String)], to buffer: inout [UInt8]) {
        appendPacked(.params, requestID: requestID, pairs: params, to: &buffer)
        appendEmpty(.params, requestID: requestID, to: &buffer)
    }

    /// Appends the GET_VALUES_RESULT record(s) answering GET_VALUES (request
    /// ID 0), e.g. `[("FCGI_MPXS_CONNS", "0")]`.
    public static func appendGetValuesResult(values: [(String, String)], to buffer: inout [UInt8]) {
        appendPacked(.getValuesResult, requestID: FastCGIConstants.nullRequestID, pairs: values, to: &buffer)
    }

    /// Appends a GET_VALUES record asking for `names` (values are empty).
    public static func appendGetValues(names: [String], to buffer: inout [UInt8]) {
        appendPacked(.getValues, requestID: FastCGIConstants.nullRequestID,
                     pairs: names.map { ($0, "") }, to: &buffer)
    }

    /// Appends the UNKNOWN_TYPE record answering a management record of a type
    /// this side does not understand.
    @inlinable
    public static func appendUnknownType(_ type: UInt8, to buffer: inout [UInt8]) {
        appendFixed(.unknownType, requestID: FastCGIConstants.nullRequestID,
                    body: UnknownTypeBody(type: type).encoded(), to: &buffer)
    }

    /// Encodes `pairs` into records of `type`, keeping pairs whole within a
    /// record whenever they fit. No records at all for no pairs, except one
    /// empty record for management types (a GET_VALUES_RESULT must exist).
    static func appendPacked(_ type: RecordType, requestID: UInt16, pairs: [(String, String)],
                             to buffer: inout [UInt8]) {
        var encoded: [UInt8] = []
        var pairEnds: [Int] = []
        pairEnds.reserveCapacity(pairs.count)
        for (name, value) in pairs {
            NameValuePairs.append(name: name.utf8, value: value.utf8, to: &encoded)
            pairEnds.append(encoded.count)
        }
        if encoded.isEmpty {
            if type.isManagement { appendEmpty(type, requestID: requestID, to: &buffer) }
            return
        }
        encoded.withUnsafeBytes { raw in
            var recordStart = 0
            var recordEnd = 0
            for pairEnd in pairEnds {
                if pairEnd - recordStart <= FastCGIConstants.maxContentLength {
                    recordEnd = pairEnd
                    continue
                }
                if recordEnd > recordStart {
                    append(type, requestID: requestID,
                           content: UnsafeRawBufferPointer(rebasing: raw[recordStart ..< recordEnd]), to: &buffer)
                    recordStart = recordEnd
                }
                if pairEnd - recordStart > FastCGIConstants.maxContentLength {
                    // One pair larger than a record: it has to be split.
                    append(type, requestID: requestID,
                           content: UnsafeRawBufferPointer(rebasing: raw[recordStart ..< pairEnd]), to: &buffer)
                    recordStart = pairEnd
                }
                recordEnd = pairEnd
            }
            if recordEnd > recordStart {
                append(type, requestID: requestID,
                       content: UnsafeRawBufferPointer(rebasing: raw[recordStart ..< recordEnd]), to: &buffer)
            }
        }
    }
}
